"""The output classes as torch pytree nodes.

Registered on import of `xlmr_torch`, so `torch.export`, the dynamo ONNX exporter and
`torch.compile` carry a model's output object through their graphs field by field and give
back the same class. The node's context is the tuple of fields that are set (fields left at
None are not children), stored by name in a serialized program (`torch.export.save`).
"""

from __future__ import annotations

import torch.utils._pytree as pytree

from xlmr_core import outputs

OUTPUT_CLASSES = (
    outputs.BaseModelOutputWithPoolingAndCrossAttentions,
    outputs.CausalLMOutputWithCrossAttentions,
    outputs.MaskedLMOutput,
    outputs.SequenceClassifierOutput,
    outputs.MultipleChoiceModelOutput,
    outputs.TokenClassifierOutput,
    outputs.QuestionAnsweringModelOutput,
)


def _flatten(output):
    return list(output.values()), tuple(output.keys())


def _flatten_with_keys(output):
    return [(pytree.MappingKey(key), value) for key, value in output.items()], tuple(output.keys())


def _dumpable(context):
    return list(context)


def _from_dumpable(dumped):
    return tuple(dumped)


def register_output_pytrees() -> None:
    """Make every output class a torch pytree node (idempotent)."""
    for cls in OUTPUT_CLASSES:
        if cls in pytree.SUPPORTED_NODES:
            continue

        def unflatten(children, context, cls=cls):
            return cls(**dict(zip(context, children)))

        pytree.register_pytree_node(
            cls,
            _flatten,
            unflatten,
            serialized_type_name=f"{cls.__module__}.{cls.__qualname__}",
            to_dumpable_context=_dumpable,
            from_dumpable_context=_from_dumpable,
            flatten_with_keys_fn=_flatten_with_keys,
        )


register_output_pytrees()

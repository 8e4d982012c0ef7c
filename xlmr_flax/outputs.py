"""The output classes as JAX pytrees.

Registered on import of `xlmr_flax`, so `jit`, `grad` and `tree_map` pass a model's output
through field by field. Absent (None) fields are not children. The serialization
registration lets a `jax.export.Exported` returning them be serialized and read back.
"""

from __future__ import annotations

import json

import jax

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


def _flatten_with_keys(output):
    return [(jax.tree_util.DictKey(k), v) for k, v in output.items()], tuple(output.keys())


def _flatten(output):
    return tuple(output.values()), tuple(output.keys())


def register_output_pytrees() -> None:
    """Register every output class (a no-op for those already registered)."""
    for cls in OUTPUT_CLASSES:

        def unflatten(keys, children, cls=cls):
            return cls(**dict(zip(keys, children)))

        try:
            jax.tree_util.register_pytree_with_keys(cls, _flatten_with_keys, unflatten, _flatten)
            jax.export.register_pytree_node_serialization(
                cls,
                serialized_name=f"xlmr.{cls.__name__}",
                serialize_auxdata=lambda keys: json.dumps(list(keys)).encode(),
                deserialize_auxdata=lambda data: tuple(json.loads(data)),
            )
        except ValueError:  # already registered (module reloaded)
            pass


register_output_pytrees()

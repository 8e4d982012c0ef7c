"""XLM-RoBERTa in Flax (Linen).

The seven public `FlaxXLMRoberta*` classes. The network reads top to bottom in its own
modules: `embeddings`, `attention`, `layer`, `encoder`, `pooler`, `heads`, `losses`, the
assembled `backbone` and the `task_modules`; `packing` is the unpadded layout, `pretrained`
the wrapper base class (parameters and the call), `inputs` the input checks and
`checkpoint_io` loading and saving. Module and parameter names
reproduce the reference `flax_model.msgpack` paths, which `xlmr_core.weight_mapping`
translates to and from the canonical checkpoint names.

A wrapper holds a Linen module and its parameters:

    model = FlaxXLMRobertaForMaskedLM(config, seed=0, dtype=jnp.float32)
    out = model(input_ids, attention_mask, params=None, dropout_rng=None, train=False)

Every call path is `jax.jit`-able: outputs are pytrees, and checks that need values
(token ids in range, labels) run only when the values are concrete (outside `jit`);
shape checks run always.

Key/value cache (decoders only): `past_key_values` is a tuple with one entry per layer,
`(self_key, self_value)` or `(self_key, self_value, cross_key, cross_value)`, each
`[batch, heads, length, head_dim]` -- the same layout as `xlmr_torch`. Each cached step
grows the cache, so under `jit` every new length compiles once.

For jitted generation there is also a fixed-size cache: `model.init_cache(batch, max_length)`
gives zero buffers of length `max_length`, and each call passes them with `cache_index`
(how many positions are already filled; may be traced). New keys and values are written
at `cache_index`, later slots are masked, and the returned buffers keep their shape, so one
compiled step serves every position. `attention_mask`, when given, covers all `max_length`
slots.
"""

from __future__ import annotations

import logging

import jax
import jax.numpy as jnp
import numpy as np

from xlmr_core.modeling_utils import IGNORE_INDEX, classification_problem_type

from . import outputs as _outputs  # noqa: F401  (registers the output classes as pytrees)
from .backbone import XLMRobertaModule
from .encoding import EncodingMixin
from .inputs import (
    as_integers,
    check_label_shapes,
    check_range,
    check_shape,
    clamp_to_index,
    concrete,
    to_index,
)
from .pretrained import FlaxXLMRobertaPreTrainedModel
from .task_modules import (
    XLMRobertaForCausalLMModule,
    XLMRobertaForMaskedLMModule,
    XLMRobertaForMultipleChoiceModule,
    XLMRobertaForQuestionAnsweringModule,
    XLMRobertaForSequenceClassificationModule,
    XLMRobertaForTokenClassificationModule,
)

__all__ = [
    "FlaxXLMRobertaPreTrainedModel",
    "FlaxXLMRobertaModel",
    "FlaxXLMRobertaForCausalLM",
    "FlaxXLMRobertaForMaskedLM",
    "FlaxXLMRobertaForSequenceClassification",
    "FlaxXLMRobertaForMultipleChoice",
    "FlaxXLMRobertaForTokenClassification",
    "FlaxXLMRobertaForQuestionAnswering",
]

logger = logging.getLogger(__name__)


class FlaxXLMRobertaModel(EncodingMixin, FlaxXLMRobertaPreTrainedModel):
    """The bare encoder (or decoder, with `config.is_decoder`), with the pooler."""

    module_class = XLMRobertaModule
    accepted_arguments = frozenset(
        {"encoder_hidden_states", "encoder_attention_mask", "past_key_values", "use_cache", "cache_index"}
    )


class FlaxXLMRobertaForCausalLM(FlaxXLMRobertaPreTrainedModel):
    """Decoder with a language-model head; `labels` give the next-token loss (shifted inside)."""

    module_class = XLMRobertaForCausalLMModule
    accepted_arguments = frozenset(
        {
            "encoder_hidden_states",
            "encoder_attention_mask",
            "past_key_values",
            "use_cache",
            "cache_index",
            "labels",
        }
    )

    def __init__(self, config, *args, **kwargs):
        if not config.is_decoder:
            logger.warning("FlaxXLMRobertaForCausalLM is meant to run with is_decoder=True")
        super().__init__(config, *args, **kwargs)

    def _head_arguments(self, inputs, labels, start_positions, end_positions, labelled_only, max_predictions):
        return self._token_label_arguments(inputs, labels, self.config.vocab_size)


class FlaxXLMRobertaForMaskedLM(FlaxXLMRobertaPreTrainedModel):
    """Encoder with a masked-language-model head.

    `labelled_positions_only=True` (needs `labels`) runs the LM head only where
    `labels != -100`: the loss is the same, `logits` is `[num_labelled, vocab]` and
    `masked_positions` holds those rows' flat indices into `[batch * sequence]`. Under
    `jit` the number of rows must be static: pass `max_predictions`; rows beyond the
    labelled ones are padding (`masked_positions == -1`, left out of the loss), and a batch
    with more labelled positions than `max_predictions` gives a NaN loss. Outside `jit`
    `max_predictions` defaults to the exact count.
    """

    module_class = XLMRobertaForMaskedLMModule
    accepted_arguments = frozenset(
        {
            "encoder_hidden_states",
            "encoder_attention_mask",
            "labels",
            "labelled_positions_only",
            "max_predictions",
        }
    )

    def __init__(self, config, *args, **kwargs):
        if config.is_decoder:
            logger.warning("FlaxXLMRobertaForMaskedLM attends both ways; set is_decoder=False")
        super().__init__(config, *args, **kwargs)

    def _head_arguments(self, inputs, labels, start_positions, end_positions, labelled_only, max_predictions):
        if labelled_only and labels is None:
            raise ValueError("labelled_positions_only=True needs labels to know which positions are labelled")
        if max_predictions is not None and not labelled_only:
            raise ValueError("max_predictions applies to labelled_positions_only=True")
        if labels is None:
            return {}
        labels = self._token_labels(inputs, labels, self.config.vocab_size)
        if not labelled_only:
            return {"labels": to_index(labels)}
        values = concrete(labels)
        if values is not None:
            labelled = values != IGNORE_INDEX
            mask = concrete(inputs["attention_mask"])
            if inputs.get("token_budget") is not None and mask is not None:
                labelled &= mask.astype(bool)  # unpadded: padded positions are never labelled
            count = int(np.sum(labelled))
            if max_predictions is None:
                max_predictions = count
            elif count > max_predictions:
                raise ValueError(
                    f"labels mark {count} positions, more than max_predictions={max_predictions}"
                )
        elif max_predictions is None:
            raise ValueError(
                "under jit, labelled_positions_only=True needs a static max_predictions "
                "(the most labelled positions a batch can have)"
            )
        return {"labels": to_index(labels), "max_predictions": int(max_predictions)}


class FlaxXLMRobertaForSequenceClassification(FlaxXLMRobertaPreTrainedModel):
    """Classification or regression from the `<s>` token.

    The loss follows `config.problem_type`; when unset it is regression for one label,
    single-label classification for integer labels and multi-label otherwise.
    """

    module_class = XLMRobertaForSequenceClassificationModule
    accepted_arguments = frozenset({"labels"})

    def _head_arguments(self, inputs, labels, start_positions, end_positions, labelled_only, max_predictions):
        if labels is None:
            return {}
        labels = labels if isinstance(labels, jax.Array) else np.asarray(labels)
        integer = np.issubdtype(labels.dtype, np.integer)
        batch_size, num_labels = self._token_shape(inputs)[0], self.config.num_labels
        problem_type = classification_problem_type(self.config, integer)
        if problem_type == "single_label_classification":
            check_label_shapes(labels, [(batch_size,), (batch_size, 1)])
            check_range(labels, num_labels, "labels", ignore_index=IGNORE_INDEX)
            return {"labels": to_index(labels)}
        if problem_type == "regression":
            shapes = [(batch_size,), (batch_size, 1)] if num_labels == 1 else [(batch_size, num_labels)]
            check_label_shapes(labels, shapes)
        else:
            check_label_shapes(labels, [(batch_size, num_labels)])
        if integer and isinstance(labels, np.ndarray):  # targets of a float loss: no int32 wrap-around
            labels = labels.astype(np.float32)
        return {"labels": jnp.asarray(labels)}


class FlaxXLMRobertaForMultipleChoice(FlaxXLMRobertaPreTrainedModel):
    """Scores `[batch, num_choices, sequence]` inputs; logits are `[batch, num_choices]`."""

    module_class = XLMRobertaForMultipleChoiceModule
    dummy_input_shape = (1, 1, 1)
    accepted_arguments = frozenset({"labels"})

    def _check_inputs(self, inputs: dict) -> dict:
        given = inputs["input_ids"] if inputs["input_ids"] is not None else inputs["inputs_embeds"]
        if (inputs["input_ids"] is None) == (inputs["inputs_embeds"] is None):
            raise ValueError("give exactly one of input_ids and inputs_embeds")
        name, layout = (
            ("input_ids", "[batch, num_choices, sequence]")
            if inputs["input_ids"] is not None
            else ("inputs_embeds", "[batch, num_choices, sequence, hidden]")
        )
        if given.ndim != layout.count(",") + 1:
            raise ValueError(f"{name} must be {layout}; got shape {tuple(given.shape)}")
        batch_size, num_choices, seq_length = given.shape[:3]
        flat = dict(inputs)
        for key in ("input_ids", "attention_mask", "token_type_ids", "position_ids", "inputs_embeds"):
            if inputs[key] is not None:
                if key != "inputs_embeds":
                    check_shape(inputs[key], (batch_size, num_choices, seq_length), key)
                # explicit rows: -1 cannot be inferred when a choice has no tokens
                flat[key] = inputs[key].reshape(batch_size * num_choices, *inputs[key].shape[2:])
        super()._check_inputs(flat)  # the checks of one encoder pass over all choices
        inputs["head_mask"] = self._check_head_mask(inputs["head_mask"])
        return inputs

    def _head_arguments(self, inputs, labels, start_positions, end_positions, labelled_only, max_predictions):
        if labels is None:
            return {}
        labels = as_integers(labels, "labels")
        given = inputs["input_ids"] if inputs["input_ids"] is not None else inputs["inputs_embeds"]
        check_label_shapes(labels, [given.shape[:1]])
        check_range(labels, given.shape[1], "labels", ignore_index=IGNORE_INDEX)
        return {"labels": to_index(labels)}


class FlaxXLMRobertaForTokenClassification(FlaxXLMRobertaPreTrainedModel):
    """One label per token (e.g. NER); label -100 marks tokens the loss skips."""

    module_class = XLMRobertaForTokenClassificationModule
    accepted_arguments = frozenset({"labels"})

    def _head_arguments(self, inputs, labels, start_positions, end_positions, labelled_only, max_predictions):
        return self._token_label_arguments(inputs, labels, self.config.num_labels)


class FlaxXLMRobertaForQuestionAnswering(FlaxXLMRobertaPreTrainedModel):
    """Extractive QA: start and end logits per token.

    Positions outside the sequence are clamped to `sequence_length` and ignored by the loss,
    which is the mean of the start and end cross-entropies.
    """

    module_class = XLMRobertaForQuestionAnsweringModule
    accepted_arguments = frozenset({"start_positions", "end_positions"})

    def _head_arguments(self, inputs, labels, start_positions, end_positions, labelled_only, max_predictions):
        if self.config.num_labels != 2:
            raise ValueError(
                f"question answering needs num_labels=2 (start, end); config has {self.config.num_labels}"
            )
        if (start_positions is None) != (end_positions is None):
            raise ValueError("give both start_positions and end_positions, or neither")
        if start_positions is None:
            return {}
        batch_size, seq_length = self._token_shape(inputs)
        out = {}
        for name, positions in (("start_positions", start_positions), ("end_positions", end_positions)):
            positions = as_integers(positions, name)
            check_label_shapes(positions, [(batch_size,), (batch_size, 1)], name)
            out[name] = clamp_to_index(positions, seq_length)  # the loss clamps them the same way
        return out

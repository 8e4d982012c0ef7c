"""`FlaxXLMRobertaPreTrainedModel`: the base of the public models.

A wrapper holds a Linen module (`model.module`) and its parameters (`model.params`); its
`__call__` checks the inputs (`inputs.py`), resolves the flags and the unpadded budget
(`packing.py`) and applies the module. Loading and saving are `checkpoint_io.py`.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from xlmr_core import XLMRobertaConfig
from xlmr_core.modeling_utils import IGNORE_INDEX, check_sequence_length
from xlmr_core.unpadding import check_unpadded_options

from .checkpoint_io import CheckpointIO
from .initialisation import Dtype
from .inputs import ID_INPUTS, InputChecks, as_array, as_integers, check_label_shapes, check_range, to_index
from .packing import packed_length


class FlaxXLMRobertaPreTrainedModel(CheckpointIO, InputChecks):
    """A Linen module (`model.module`) plus its parameters (`model.params`) and input checks.

    `dtype` is the computation dtype, `param_dtype` the dtype parameters are created and
    loaded in (bfloat16 compute over float32 parameters works).
    """

    module_class: type[nn.Module]
    base_model_prefix = "roberta"
    # Which optional arguments the head takes, beyond the token inputs.
    accepted_arguments: frozenset[str] = frozenset()
    # The `input_ids` shape `init` traces with (multiple choice adds a choices axis).
    dummy_input_shape: tuple[int, ...] = (1, 1)

    def __init__(
        self,
        config: XLMRobertaConfig,
        seed: int = 0,
        dtype: Dtype = jnp.float32,
        param_dtype: Dtype = jnp.float32,
        *,
        _do_init: bool = True,
    ):
        if not isinstance(config, XLMRobertaConfig):
            raise TypeError(f"config must be an XLMRobertaConfig, got {type(config).__name__}")
        config.validate()
        if config.add_cross_attention and not config.is_decoder:
            raise ValueError(
                "add_cross_attention=True needs is_decoder=True: cross-attention is a decoder part"
            )
        self.config = config
        self.dtype = dtype
        self.param_dtype = param_dtype
        self.module = self.module_class(config=config, dtype=dtype, param_dtype=param_dtype)
        self.seed = seed
        self._params = self.init_weights(jax.random.PRNGKey(seed)) if _do_init else None

    # -- parameters
    def _dummy_inputs(self) -> dict:
        inputs = {"input_ids": jnp.zeros(self.dummy_input_shape, jnp.int32)}
        if self.config.add_cross_attention:
            inputs["encoder_hidden_states"] = jnp.zeros((1, 1, self.config.hidden_size), self.dtype)
        return inputs

    def init_weights(self, rng) -> dict:
        """Fresh parameters, initialised like the reference (normal(initializer_range), zero biases)."""
        return self.module.init(rng, **self._dummy_inputs())["params"]

    def parameter_shapes(self) -> dict:
        """The parameter tree as `jax.ShapeDtypeStruct`s, without allocating anything."""
        return jax.eval_shape(self.init_weights, jax.random.PRNGKey(0))

    @property
    def params(self) -> dict:
        if self._params is None:
            raise ValueError("this model was built without parameters; set model.params")
        return self._params

    @params.setter
    def params(self, params: dict) -> None:
        self._params = params

    def num_parameters(self) -> int:
        return sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(self.params))

    # -- calling
    def __call__(
        self,
        input_ids=None,
        attention_mask=None,
        token_type_ids=None,
        position_ids=None,
        head_mask=None,
        inputs_embeds=None,
        encoder_hidden_states=None,
        encoder_attention_mask=None,
        past_key_values=None,
        use_cache: bool | None = None,
        cache_index=None,
        labels=None,
        start_positions=None,
        end_positions=None,
        labelled_positions_only: bool = False,
        max_predictions: int | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        params: dict | None = None,
        dropout_rng=None,
        train: bool = False,
        unpadded: bool = False,
        token_budget: int | None = None,
        pair_budget: int | None = None,
    ):
        """Run the model. Arguments and outputs as in `xlmr_torch`; `train=True` turns dropout on
        and needs `dropout_rng`. Works inside `jax.jit` / `jax.grad` with `params` passed in.

        `cache_index` selects the fixed-size cache (see `init_cache` and the module docstring);
        `max_predictions` bounds the labelled-positions masked-LM path under `jit`.

        `unpadded=True` computes on the real tokens of `attention_mask` only (`xlmr_core.unpadding`):
        packed into a static `token_budget` rows, outputs back in the padded layout with zeros at
        padding. With a concrete mask the budget defaults to the real-token count's bucket (one
        compilation per bucket) and a mask without padding takes the padded path; under `jit` the
        mask is traced, so pass `token_budget` (static; a batch with more real tokens gives NaN),
        else it is `batch * sequence` (correct, no saving). `pair_budget` (static) bounds the
        attention's block pairs the same way; without it a traced mask pays the worst case the
        token budget allows. `xlmr_core.unpadding.static_budgets(mask)` gives both."""
        config = self.config
        optional = {
            "encoder_hidden_states": encoder_hidden_states,
            "encoder_attention_mask": encoder_attention_mask,
            "past_key_values": past_key_values,
            "use_cache": use_cache,
            "cache_index": cache_index,
            "labels": labels,
            "start_positions": start_positions,
            "end_positions": end_positions,
            "labelled_positions_only": labelled_positions_only or None,
            "max_predictions": max_predictions,
        }
        for name, value in optional.items():
            if value is not None and name not in self.accepted_arguments:
                raise TypeError(f"{type(self).__name__} does not take {name}")
        if train and dropout_rng is None:
            raise ValueError("train=True turns dropout on and needs dropout_rng (a jax.random key)")
        output_attentions = bool(config.output_attentions if output_attentions is None else output_attentions)
        if unpadded:  # before the shape checks: the option, not its shape, is what is wrong
            check_unpadded_options(
                past_key_values=past_key_values,
                use_cache=use_cache,
                encoder_hidden_states=encoder_hidden_states,
                output_attentions=output_attentions,
                head_mask=head_mask,
            )

        inputs = {
            "input_ids": as_integers(input_ids, "input_ids"),
            "attention_mask": as_array(attention_mask),
            "token_type_ids": as_integers(token_type_ids, "token_type_ids"),
            "position_ids": as_integers(position_ids, "position_ids"),
            "head_mask": as_array(head_mask),
            "inputs_embeds": as_array(inputs_embeds),
            "encoder_hidden_states": as_array(encoder_hidden_states),
            "encoder_attention_mask": as_array(encoder_attention_mask),
            "past_key_values": as_array(past_key_values),
            "cache_index": None if cache_index is None else jnp.asarray(cache_index, jnp.int32),
        }
        inputs = self._check_inputs(inputs)
        inputs.update({name: to_index(inputs[name]) for name in ID_INPUTS})
        inputs["token_budget"] = packed_length(
            inputs["attention_mask"], unpadded, token_budget, pair_budget, config.is_decoder
        )
        if inputs["token_budget"] is not None:
            inputs["pair_budget"] = pair_budget
        use_cache = config.is_decoder and (config.use_cache if use_cache is None else use_cache)
        if labels is not None or inputs["token_budget"] is not None:
            use_cache = False
        if cache_index is not None:
            use_cache = True  # the updated buffers are the point of the call
        kwargs = dict(
            inputs,
            use_cache=bool(use_cache),
            output_attentions=output_attentions,
            output_hidden_states=bool(
                config.output_hidden_states if output_hidden_states is None else output_hidden_states
            ),
        )
        if "use_cache" not in self.accepted_arguments:
            kwargs["use_cache"] = False  # heads without a cache output do not build one
        kwargs.update(
            self._head_arguments(
                inputs, labels, start_positions, end_positions, labelled_positions_only, max_predictions
            )
        )
        rngs = {} if dropout_rng is None else {"dropout": dropout_rng}
        output = self.module.apply(
            {"params": self.params if params is None else params},
            **kwargs,
            deterministic=not train,
            rngs=rngs,
        )
        use_dict = config.return_dict if return_dict is None else return_dict
        return output if use_dict else output.to_tuple()

    def _head_arguments(self, inputs, labels, start_positions, end_positions, labelled_only, max_predictions):
        """Check and convert the head's own arguments (labels and the like); overridden per head."""
        return {}

    def _token_labels(self, inputs, labels, classes: int):
        """One label per token, checked against the token shape and `[0, classes)` or `IGNORE_INDEX`."""
        labels = as_integers(labels, "labels")
        check_label_shapes(labels, [self._token_shape(inputs)])
        check_range(labels, classes, "labels", ignore_index=IGNORE_INDEX)
        return labels

    def _token_label_arguments(self, inputs, labels, classes: int) -> dict:
        """The head arguments of a per-token loss: checked `labels`, or none."""
        return {} if labels is None else {"labels": to_index(self._token_labels(inputs, labels, classes))}

    def init_cache(self, batch_size: int, max_length: int) -> tuple:
        """Zero key/value buffers for `max_length` positions, for calls with `cache_index`."""
        config = self.config
        if not config.is_decoder:
            raise ValueError("a key/value cache needs a decoder (config.is_decoder=True)")
        check_sequence_length(config, 0, max_length)
        shape = (batch_size, config.num_attention_heads, max_length, config.head_dim)
        return tuple(
            (jnp.zeros(shape, self.dtype), jnp.zeros(shape, self.dtype))
            for _ in range(config.num_hidden_layers)
        )

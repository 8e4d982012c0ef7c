"""`TFXLMRobertaPreTrainedModel`, the base class of the seven public models.

It takes a call's inputs in every form (a dict, keywords, a list), checks them all before
Keras's call wrapper (so an error is the one line raised by the checks), and holds Keras
serialisation and serving. Keras training is `KerasTraining`, loading and saving `CheckpointIO`.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Mapping

import keras
import tensorflow as tf

from xlmr_core import XLMRobertaConfig
from xlmr_core.architecture import expected_shapes
from xlmr_core.modeling_utils import CROSS_ATTENTION_INPUTS, TARGETS, TOKEN_INPUTS

from .checkpoint_io import VARIABLE_LAYOUT, CheckpointIO
from .initialisation import build_variables
from .input_lists import as_input_dict, is_input_list, list_order
from .input_specs import ServingInputSpec
from .inputs import as_index, check_integer, dim, symbolic_ids
from .packing import Packing, packing_for_call
from .training import KerasTraining

# What `call` accepts from a dict; anything else in a dict is an error, not ignored.
_INPUT_NAMES = (
    *TOKEN_INPUTS,
    *CROSS_ATTENTION_INPUTS,
    "past_key_values",
    "use_cache",
    *TARGETS,
    "output_attentions",
    "output_hidden_states",
    "return_dict",
    "labelled_positions_only",
    "unpadded",
    "token_budget",
    "pair_budget",
)
# Options passed to Keras's call as Python values, never as tensors.
_STATIC_OPTIONS = ("unpadded", "token_budget", "pair_budget")
_INTEGER_INPUTS = ("input_ids", "token_type_ids", "position_ids")


OUTPUT_OPTIONS = ("output_attentions", "output_hidden_states", "return_dict")
UNPADDED_OPTIONS = ("unpadded", "token_budget", "pair_budget")
_FALSE_BY_DEFAULT = ("unpadded", "labelled_positions_only")


def forward_arguments(*names: str):
    """Declare a model's `call(self, *args, training=False, **inputs)` as taking `names`, then `training`.

    The seven models share the argument names and differ in which they take and in what order
    (the reference's); the declared signature is what `inspect`, Keras and `__call__` see. Every
    argument defaults to None, except `unpadded` and `labelled_positions_only` (False).
    """
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    parameters = [inspect.Parameter("self", kind)]
    parameters += [
        inspect.Parameter(n, kind, default=False if n in _FALSE_BY_DEFAULT else None) for n in names
    ]
    parameters.append(inspect.Parameter("training", kind, default=False))

    def declare(call):
        call.__signature__ = inspect.Signature(parameters)
        return call

    return declare


@functools.cache
def _call_parameters(model_class) -> tuple[str, ...]:
    """The argument names of `model_class.call`, in order (without `self`)."""
    return tuple(inspect.signature(model_class.call).parameters)[1:]


@functools.cache
def _call_defaults(model_class) -> dict:
    """The forward arguments of `model_class.call` (without `self` and `training`) and their defaults."""
    parameters = list(inspect.signature(model_class.call).parameters.values())[1:-1]
    return {parameter.name: parameter.default for parameter in parameters}


class TFXLMRobertaPreTrainedModel(CheckpointIO, KerasTraining, ServingInputSpec, keras.Model):
    """Input handling for every model; Keras training is `KerasTraining`, files `CheckpointIO`."""

    base_model_prefix = "roberta"
    # The arguments that carry training targets, in the order a bare `y` fills them.
    label_names: tuple[str, ...] = ("labels",)
    # What a call that does not say uses (set them for `fit`/`evaluate`/`predict`, whose steps
    # call the model without options): `model.unpadded = True`, and under XLA a `token_budget`
    # (and a `pair_budget`, see `xlmr_core.unpadding.static_budgets`).
    unpadded: bool = False
    token_budget: int | None = None
    pair_budget: int | None = None

    def __init__(self, config: XLMRobertaConfig, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(config, XLMRobertaConfig):
            raise TypeError(f"config must be an XLMRobertaConfig, got {type(config).__name__}")
        config.validate()
        if config.add_cross_attention and not config.is_decoder:
            raise ValueError(
                "add_cross_attention=True needs is_decoder=True: cross-attention is a decoder part"
            )
        self.config = config
        self._init_input_conversion()

    # Not converted by AutoGraph: its control flow is on shapes and flags, and converting the
    # model's code made up most of the time to trace a training step or an export.
    @tf.autograph.experimental.do_not_convert
    def __call__(self, *args, **kwargs):
        """Run the model (see `call`), every input checked first.

        The checks run here, before Keras's call wrapper, so that a bad input raises the one-line
        error of `inputs.py`, not Keras's many-line report around it. Keras then receives one plain
        dict of tensors (a tokenizer's BatchEncoding, a dict subclass, included), the flags as keywords.
        """
        names = _call_parameters(type(self))
        if len(args) > len(names):
            raise TypeError(f"{type(self).__name__} takes at most {len(names)} positional arguments")
        arguments = dict(zip(names, args))
        for key, value in kwargs.items():
            if key not in names:
                raise TypeError(f"{type(self).__name__} got an unexpected keyword argument {key!r}")
            if key in arguments:
                raise TypeError(f"{type(self).__name__} got {key} both positionally and as a keyword")
            arguments[key] = value
        if any(isinstance(v, keras.KerasTensor) for v in tf.nest.flatten(list(arguments.values()))):
            # symbolic (functional) use: Keras traces `call`
            return super().__call__(*self.autocast_floats(args), **self.autocast_floats(kwargs))
        options = {"training": arguments.pop("training")} if "training" in arguments else {}
        values = self.checked_inputs(arguments)
        for key in (*_INTEGER_INPUTS, *self.label_names):
            if values.get(key) is not None and values[key].dtype.is_integer:
                values[key] = as_index(values[key])  # after the range checks: uint64 stays exact
        flags = {
            k: v for k, v in values.items() if isinstance(v, bool) or (k in _STATIC_OPTIONS and v is not None)
        }
        tensors = {k: v for k, v in values.items() if v is not None and k not in flags}
        return super().__call__(self.autocast_floats(tensors), **flags, **options)

    def checked_inputs(self, arguments: dict) -> dict:
        """A call's arguments (name -> value, no `training`) as tensors, every input and target checked.

        Also what `fit` / `evaluate` run on each batch on the host before the compiled step.
        """
        names = _call_parameters(type(self))
        values = self._gather_inputs(arguments.pop("input_ids", None), {**dict.fromkeys(names), **arguments})
        for key in _STATIC_OPTIONS:
            if key in names and values.get(key) is None:
                values[key] = getattr(self, key)
        return self.check_inputs(values)

    def check_inputs(self, values: dict) -> dict:
        """Every check of a call's inputs and targets; returns `values` guarded by the checks in a graph."""
        values = self.roberta.check_inputs(values)
        tokens = values["input_ids"] if values.get("input_ids") is not None else values["inputs_embeds"]
        return self.check_targets(values, dim(tokens, 0), dim(tokens, 1))

    def check_targets(self, values: dict, batch_size, seq_length) -> dict:
        """The checks of the training targets (`labels`, ...) against the token shape."""
        return values

    # -- Keras serialisation: the config carries the XLMRobertaConfig, so that `.keras` files,
    # `keras.models.clone_model`, `copy.deepcopy` and `pickle` rebuild the same model.
    def get_config(self) -> dict:
        """Keras's config (name, trainable, dtype policy) with the `XLMRobertaConfig` as a dict."""
        return {**super().get_config(), "config": self.config.to_dict()}

    @classmethod
    def from_config(cls, config: dict, custom_objects=None):
        """The model `get_config` describes (random weights; Keras loads the saved ones after)."""
        config = dict(config)
        model_config = config.pop("config")
        if not isinstance(model_config, XLMRobertaConfig):
            model_config = XLMRobertaConfig.from_dict(model_config)
        policy = config.pop("dtype", None)
        if isinstance(policy, dict):
            policy = keras.dtype_policies.deserialize(policy)
        # The layers inside take the global policy when built: build them under the saved one.
        previous = keras.config.dtype_policy()
        keras.config.set_dtype_policy(policy or previous)
        try:
            return cls(model_config, **config)
        finally:
            keras.config.set_dtype_policy(previous)

    # -- serving: what `tf.saved_model.save(model, directory)` and `model.export(directory)` write
    def serving_signature(self, dtype=tf.int32) -> dict[str, tf.TensorSpec]:
        """`dtype` (int32 or int64) `input_ids` and `attention_mask` (and `token_type_ids` when the
        config has more than one token type), any batch size and length: the inputs of `serve`."""
        names = ["input_ids", "attention_mask"]
        if self.config.type_vocab_size > 1:
            names.append("token_type_ids")
        shape = [None] * self.dummy_inputs["input_ids"].shape.rank
        return {name: tf.TensorSpec(shape, dtype, name=name) for name in names}

    def serve(self, inputs: Mapping) -> dict:
        """The forward pass for serving: a dict of tensors in, a plain dict of output tensors out."""
        options = {"use_cache": False} if "use_cache" in _call_parameters(type(self)) else {}
        output = self(dict(inputs), training=False, return_dict=True, **options)
        return {key: value for key, value in output.items() if tf.is_tensor(value)}

    @property
    def _default_save_signature(self):
        # The TF hook `tf.saved_model.save` reads when given no signatures: `serve` over int32 ids
        # (Keras's own would trace the model with float32 inputs, which ids are not).
        return self._serving_function([self.serving_signature()])

    def _serving_function(self, input_signature):
        # No AutoGraph: the Python control flow is on shapes and flags, and converting it is
        # most of the export time.
        return tf.function(self.serve, input_signature=input_signature, autograph=False)

    def export(self, filepath, format="tf_saved_model", verbose=None, input_signature=None, **kwargs):
        """`keras.Model.export`; a SavedModel's `serve` endpoint (and its `serving_default`
        signature) is `self.serve`, over `serving_signature()` unless `input_signature` is given;
        then `serve_int64` takes int64 ids, as the tokenizers return them for "np" and "tf"."""
        default_signature = input_signature is None
        if default_signature:
            input_signature = [self.serving_signature()]
        if format != "tf_saved_model":
            return super().export(filepath, format, verbose, input_signature, **kwargs)
        archive = keras.export.ExportArchive()
        archive.track(self)
        archive.add_endpoint("serve", self._serving_function(input_signature))  # the first: serving_default
        if default_signature:
            archive.add_endpoint("serve_int64", self._serving_function([self.serving_signature(tf.int64)]))
        archive.write_out(filepath, verbose=True if verbose is None else verbose)

    def build(self, input_shape=None):
        pass  # `_build_with_dummy_inputs` creates the variables (see `Block`)

    def _build_with_dummy_inputs(self) -> None:
        """Create every variable now (so weights load before the first real call).

        From the config's canonical shapes, without running the model (an eager call of the
        whole network was half of `from_pretrained`'s time); a dummy call builds whatever a
        layer's shape cannot be told that way.
        """
        head = type(self).__name__.removeprefix(f"{self.class_name_prefix}XLMRoberta")
        if build_variables(self, expected_shapes(self.config, head), VARIABLE_LAYOUT):
            return
        inputs = dict(self.dummy_inputs)
        if self.config.add_cross_attention:
            inputs["encoder_hidden_states"] = tf.zeros((1, 1, self.config.hidden_size))
        self(inputs, training=False)

    @property
    def dummy_inputs(self) -> dict:
        return {"input_ids": tf.constant([[0, 2]], tf.int32)}

    # -- inputs
    def _gather_inputs(self, input_ids, arguments: dict) -> dict:
        """Merge a dict given as the first argument with the keyword arguments; convert to tensors.

        `arguments` are the call's arguments by name: only the names in `_INPUT_NAMES` are kept.
        """
        accepted = [key for key in _INPUT_NAMES if key in arguments]
        values = {key: arguments[key] for key in accepted if key != "input_ids"}
        if is_input_list(input_ids):
            input_ids = self.input_dict(input_ids)
        if isinstance(input_ids, Mapping):
            unknown = sorted(set(input_ids) - set(accepted))
            if unknown:
                raise ValueError(
                    f"{type(self).__name__} got unexpected inputs {unknown}; it accepts {accepted}"
                )
            for key, value in input_ids.items():
                if values.get(key) is not None and value is not None:
                    raise ValueError(f"{key} was given both in the input dict and as an argument")
                if value is not None:
                    values[key] = value
        else:
            values["input_ids"] = input_ids
        values = {key: values.get(key) for key in _INPUT_NAMES}
        for key in _INPUT_NAMES:
            value = values.get(key)
            if value is None or key in ("past_key_values", *_STATIC_OPTIONS) or isinstance(value, bool):
                continue
            if not tf.is_tensor(value):
                value = tf.convert_to_tensor(value)
            if key in _INTEGER_INPUTS:
                if symbolic_ids(value):
                    value = as_index(value)
                check_integer(value, key)
            values[key] = value
        if values.get("past_key_values") is not None:
            values["past_key_values"] = tuple(
                tuple(tf.convert_to_tensor(t) for t in entry) for entry in values["past_key_values"]
            )
        return values

    def input_dict(self, inputs) -> dict:
        """The model's inputs as a dict: a dict as it is, a list of inputs by the reference's order
        (see `input_lists.py`), anything else as `input_ids`."""
        if isinstance(inputs, Mapping):
            return dict(inputs)
        if is_input_list(inputs):
            order = list_order(_call_parameters(type(self)), self.label_names)
            return as_input_dict(inputs, order, type(self).__name__)
        return {"input_ids": inputs}

    def _flags(self, values: dict) -> tuple[bool, bool, bool]:
        config = self.config
        pick = lambda key: getattr(config, key) if values.get(key) is None else bool(values[key])  # noqa: E731
        return pick("output_attentions"), pick("output_hidden_states"), pick("return_dict")

    def _call_values(self, args: tuple, inputs: dict) -> dict:
        """A `call`'s arguments (see `forward_arguments`) by name, gathered and converted to tensors."""
        defaults = _call_defaults(type(self))
        arguments = {**defaults, **dict(zip(defaults, args)), **inputs}
        if len(args) > len(defaults) or len(arguments) > len(defaults):
            unknown = sorted(set(arguments) - set(defaults))
            raise TypeError(f"{type(self).__name__}.call got unexpected arguments {unknown or args}")
        return self._gather_inputs(arguments["input_ids"], arguments)

    def _packing(self, values: dict) -> Packing | None:
        """The `Packing` of this call when it runs unpadded, else None (see `packing_for_call`)."""
        return packing_for_call(
            values.get("attention_mask"),
            values.get("unpadded"),
            values.get("token_budget"),
            values.get("pair_budget"),
            self.config.is_decoder,
        )

    def _body(self, values: dict, training: bool, keep_packed: bool = True, **extra):
        """The main layer on `values`, unpadded when they say so: `(outputs, packing or None)`.

        Unpadded, `last_hidden_state` stays packed for the head unless `keep_packed=False`.
        """
        output_attentions, output_hidden_states, _ = self._flags(values)
        packing = self._packing(values)
        outputs = self.roberta(
            input_ids=values.get("input_ids"),
            attention_mask=values.get("attention_mask"),
            token_type_ids=values.get("token_type_ids"),
            position_ids=values.get("position_ids"),
            head_mask=values.get("head_mask"),
            inputs_embeds=values.get("inputs_embeds"),
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            packing=packing,
            keep_packed=keep_packed,
            training=training,
            **extra,
        )
        return outputs, packing

    def _return(self, output, values: dict):
        """`output` as the call's `return_dict` asks: the output object or its tuple."""
        return output if self._flags(values)[2] else output.to_tuple()

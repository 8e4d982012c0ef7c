"""Model outputs shared by the three frameworks.

An output is an ordered dict whose fields are also attributes (`out.logits`,
`out["logits"]`, `out[0]`). Fields left at `None` are absent from the dict and from
`to_tuple()`, which is what `return_dict=False` returns, as in the reference.

An output is rebuilt from its items the way tools that walk nested containers rebuild any
mapping: `type(out)(dict(out))` (Accelerate's output conversion) and
`type(out)((key, value) for ...)` (`tf.nest`) give back an equal output, every field in place.
Each framework registers the classes with its own tree utilities (torch pytrees in
`xlmr_torch.outputs`, JAX pytrees in `xlmr_flax.modeling`).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar


class ModelOutput(OrderedDict):
    """Base of every output type: a fixed, ordered list of optional fields."""

    fields: ClassVar[tuple[str, ...]] = ()

    def __init__(self, *args, **kwargs):
        super().__init__()
        if len(args) == 1 and not kwargs:
            items = _field_items(args[0], self.fields)
            if items is not None:
                args, kwargs = (), {}
                for key, value in items:
                    if key in kwargs:
                        raise TypeError(f"field {key!r} given twice")
                    kwargs[key] = value
        if len(args) > len(self.fields):
            raise TypeError(f"{type(self).__name__} takes at most {len(self.fields)} positional fields")
        values = dict(zip(self.fields, args))
        for key, value in kwargs.items():
            if key not in self.fields:
                raise TypeError(f"{type(self).__name__} has no field {key!r}; fields are {self.fields}")
            if key in values:
                raise TypeError(f"field {key!r} given twice")
            values[key] = value
        for key in self.fields:
            if values.get(key) is not None:
                super().__setitem__(key, values[key])

    def __getattr__(self, name: str) -> Any:
        fields = type(self).fields
        if name in fields:
            return self.get(name)
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        if name in type(self).fields:
            self[name] = value
        else:
            super().__setattr__(name, value)

    def __setitem__(self, key: str, value: Any) -> None:
        if key not in self.fields:
            raise KeyError(f"{type(self).__name__} has no field {key!r}")
        if value is None:
            self.pop(key, None)
            return
        # Keep field order whatever order fields are set in.
        items = {**self, key: value}
        super().clear()
        for name in self.fields:
            if name in items:
                super().__setitem__(name, items[name])

    def __getitem__(self, key):
        if isinstance(key, (int, slice)):
            return self.to_tuple()[key]
        return super().__getitem__(key)

    def to_tuple(self) -> tuple:
        """The fields that are set, in declaration order."""
        return tuple(self[name] for name in self.fields if name in self)

    def __reduce__(self):
        return type(self), (), None, None, iter(self.items())

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={_short(v)}" for k, v in self.items())
        return f"{type(self).__name__}({inner})"


def _field_items(value: Any, fields: tuple[str, ...]) -> list | None:
    """`value`'s (key, value) pairs when it is a whole output given as one argument, else None.

    A mapping, or an iterator / list of `(field name, value)` pairs, is an output's items;
    anything else (a tensor, an array) is the first field's value.
    """
    if hasattr(value, "shape"):
        return None
    if isinstance(value, Mapping):
        return list(value.items())
    if isinstance(value, Iterator):
        value = list(value)
    elif not isinstance(value, list):
        return None
    if all(isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str) for item in value):
        return value
    return None


def _short(value: Any) -> str:
    shape = getattr(value, "shape", None)
    if shape is not None:
        return f"<{type(value).__name__} shape={tuple(shape)}>"
    if isinstance(value, tuple):
        return f"<tuple of {len(value)}>"
    return repr(value)


class BaseModelOutputWithPoolingAndCrossAttentions(ModelOutput):
    """What `XLMRobertaModel` returns."""

    fields = (
        "last_hidden_state",
        "pooler_output",
        "past_key_values",
        "hidden_states",
        "attentions",
        "cross_attentions",
    )


class CausalLMOutputWithCrossAttentions(ModelOutput):
    """What `XLMRobertaForCausalLM` returns."""

    fields = ("loss", "logits", "past_key_values", "hidden_states", "attentions", "cross_attentions")


class MaskedLMOutput(ModelOutput):
    """What `XLMRobertaForMaskedLM` returns.

    On the labelled-positions path `logits` holds one row per labelled token
    (`[num_labelled, vocab]`) and `masked_positions` the flat indices of those rows.
    """

    fields = ("loss", "logits", "hidden_states", "attentions", "masked_positions")


class SequenceClassifierOutput(ModelOutput):
    """What `XLMRobertaForSequenceClassification` returns."""

    fields = ("loss", "logits", "hidden_states", "attentions")


class MultipleChoiceModelOutput(ModelOutput):
    """What `XLMRobertaForMultipleChoice` returns."""

    fields = ("loss", "logits", "hidden_states", "attentions")


class TokenClassifierOutput(ModelOutput):
    """What `XLMRobertaForTokenClassification` returns."""

    fields = ("loss", "logits", "hidden_states", "attentions")


class QuestionAnsweringModelOutput(ModelOutput):
    """What `XLMRobertaForQuestionAnswering` returns."""

    fields = ("loss", "start_logits", "end_logits", "hidden_states", "attentions")

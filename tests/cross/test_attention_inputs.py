"""Every wing hands one `AttentionInputs` down its stack instead of repeating the argument list.

The backbone builds it once per call; the encoder, each layer and each attention take
`(hidden_states, inputs, ...)` with only what varies per layer beside it. Read from the source
(no framework imported), so the three wings cannot drift apart.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WINGS = {"torch": "xlmr_torch", "tf": "xlmr_tf", "flax": "xlmr_flax"}
FIELDS = ("attention_bias", "encoder_hidden_states", "encoder_attention_bias", "output_attentions", "packing")
# Flax's fixed-size cache says per call how many slots are filled; the other wings have no such cache.
EXTRA_FIELDS = {"flax": ("cache_index",)}
# module -> classes whose call takes `(hidden_states, inputs, ...)`
STACK = {
    "attention": ("XLMRobertaSelfAttention", "XLMRobertaAttention"),
    "layer": ("XLMRobertaLayer",),
    "encoder": ("XLMRobertaEncoder",),
}
CALLS = ("forward", "call", "__call__")


def _classes(path: Path) -> dict[str, ast.ClassDef]:
    tree = ast.parse(path.read_text())
    return {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}


def _fields(node: ast.ClassDef) -> tuple[str, ...]:
    return tuple(
        item.target.id
        for item in node.body
        if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)
    )


def _call_parameters(node: ast.ClassDef) -> list[str]:
    for item in node.body:
        if isinstance(item, ast.FunctionDef) and item.name in CALLS:
            return [a.arg for a in item.args.args + item.args.kwonlyargs]
    raise AssertionError(f"{node.name} defines none of {CALLS}")


@pytest.mark.parametrize("wing", WINGS)
def test_attention_inputs_is_defined_once_in_attention(wing):
    package = ROOT / WINGS[wing]
    defining = [p.stem for p in sorted(package.glob("*.py")) if "AttentionInputs" in _classes(p)]
    assert defining == ["attention"]
    fields = _fields(_classes(package / "attention.py")["AttentionInputs"])
    assert fields == FIELDS + EXTRA_FIELDS.get(wing, ())


@pytest.mark.parametrize("wing", WINGS)
@pytest.mark.parametrize("module", STACK)
def test_stack_takes_inputs_not_the_argument_list(wing, module):
    classes = _classes(ROOT / WINGS[wing] / f"{module}.py")
    for name in STACK[module]:
        parameters = _call_parameters(classes[name])
        assert parameters[:3] == ["self", "hidden_states", "inputs"], (name, parameters)
        repeated = set(parameters) & set(FIELDS + ("cache_index",))
        assert not repeated, f"{wing} {name} still takes {sorted(repeated)} beside `inputs`"

"""`jax.export` and polymorphic `jax2tf` of every head, with symbolic batch and sequence sizes.

One exported program (and one TF graph) serves every shape: each is serialized (or wrapped in a
`tf.function`), called at three shapes, and must equal the eager call to 1e-5 with the same
output pytrees. The sequence bound comes from the export's constraint (`s <= max_sequence_length`);
an unbounded one is a clear error, and eager over-long inputs keep theirs.

The default run exports one program holding every head (absolute positions) plus one head per
relative kind -- one compile per shape instead of one per head and shape -- and converts two
heads with jax2tf; `XLMR_HEAVY=1` also exports and converts every head with every position kind
on its own.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import export

from tests.cross.harness import POSITION_KINDS
from xlmr_core.modeling_utils import check_sequence_length

from .conftest import HEADS

HEAVY = os.environ.get("XLMR_HEAVY") == "1"
# (head, position kind) sets, each exported as one program.
DEFAULT_SET = tuple((head, "absolute") for head in HEADS) + (
    ("Model", "relative_key"),
    ("ForCausalLM", "relative_key_query"),
)
# jax2tf's default slice (TF compiles are the slowest part): three-dimensional ids, a decoder, a
# relative kind.
JAX2TF_SET = (("ForMultipleChoice", "absolute"), ("ForCausalLM", "relative_key_query"))
SINGLES = [((head, kind),) for kind in POSITION_KINDS for head in HEADS] if HEAVY else []
SINGLE_IDS = [f"{head}-{kind}" for ((head, kind),) in SINGLES]
# Flat ids are [n, s]; multiple choice takes [b, c, s]. Three sizes of each, sharing s.
FLAT_SHAPES = ((2, 7), (4, 3), (6, None))  # None: the longest sequence the program allows
CHOICES = 2


def _model(make_model, head: str, kind: str = "absolute"):
    """The shared tiny model (the session cache of tests/flax/conftest.py, as test_modeling asks)."""
    overrides = {} if kind == "absolute" else {"position_embedding_type": kind}
    if head == "ForCausalLM":  # as a decoder, so the causal mask is exported too
        overrides["is_decoder"] = True
    return make_model(head, **overrides)


def _models(make_model, cases) -> dict:
    return {f"{head}-{kind}": _model(make_model, head, kind) for head, kind in cases}


def _takes_choices(model) -> bool:
    return type(model).__name__ == "FlaxXLMRobertaForMultipleChoice"


def _longest(models) -> int:
    return min(model.config.max_sequence_length for model in models.values())


def _program(models):
    """Every model in one function: flat ids for all but multiple choice, which gets `[b, c, s]`."""

    def forward(params, ids, mask, types, choice_ids, choice_mask, choice_types):
        outputs = {}
        for key, model in models.items():
            args = (choice_ids, choice_mask, choice_types) if _takes_choices(model) else (ids, mask, types)
            outputs[key] = model(args[0], args[1], token_type_ids=args[2], params=params[key])
        return outputs

    return forward


def _eager(models, inputs) -> dict:
    return _program(models)({key: model.params for key, model in models.items()}, *inputs)


def _inputs(config, shape, seed=0) -> tuple:
    """Flat `[n, s]` ids, mask and types (the last row padded over its last third), then the same
    regrouped as `[n / CHOICES, CHOICES, s]`: the encoder sees the same shapes either way."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(3, config.vocab_size, size=shape).astype(np.int32)
    ids[:, 0] = config.bos_token_id
    mask = np.ones(shape, np.int32)
    mask[-1, shape[1] - shape[1] // 3 :] = 0
    ids[mask == 0] = config.pad_token_id
    types = rng.integers(0, config.type_vocab_size, size=shape).astype(np.int32)
    flat = (ids, mask, types)
    return flat + tuple(x.reshape(-1, CHOICES, shape[1]) for x in flat)


def _shapes(limit: int) -> list[tuple]:
    return [(n, limit if s is None else s) for n, s in FLAT_SHAPES]


def _symbolic_specs(limit: int | None) -> list[jax.ShapeDtypeStruct]:
    """Specs of the six id inputs: `(n, s)` three times, `(b, c, s)` three times."""
    n, b, c, s = export.symbolic_shape("n, b, c, s", constraints=[f"s <= {limit}"] if limit else ())
    flat, choices = jax.ShapeDtypeStruct((n, s), jnp.int32), jax.ShapeDtypeStruct((b, c, s), jnp.int32)
    return [flat] * 3 + [choices] * 3


def _parameter_specs(models):
    params = {key: model.params for key, model in models.items()}
    return jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), params)


_EAGER: dict = {}


def _reference(make_model, cases) -> tuple[dict, int, list]:
    """(models, longest sequence, [(inputs, eager outputs) per shape]). Each model's eager outputs
    are computed once per shape, for both tests (eager is the expensive part)."""
    models = _models(make_model, cases)
    limit = _longest(models)
    config = next(iter(models.values())).config  # the tiny configs share vocabulary and padding
    runs = []
    for shape in _shapes(limit):
        inputs = _inputs(config, shape)
        for key, model in models.items():
            if (key, shape) not in _EAGER:
                _EAGER[key, shape] = _eager({key: model}, inputs)[key]
        runs.append((inputs, {key: _EAGER[key, shape] for key in models}))
    return models, limit, runs


def _assert_matches(actual, expected, what: str) -> None:
    """Same pytree (the output class included) and every leaf within 1e-5 x max(1, max |leaf|)."""
    assert type(actual) is type(expected), what
    assert jax.tree_util.tree_structure(actual) == jax.tree_util.tree_structure(expected), what
    for (path, a), e in zip(jax.tree_util.tree_leaves_with_path(actual), jax.tree_util.tree_leaves(expected)):
        a, e = np.asarray(a), np.asarray(e)
        assert a.shape == e.shape, (what, path)
        bound = 1e-5 * max(1.0, float(np.max(np.abs(e))))
        assert float(np.max(np.abs(a - e))) <= bound, (what, jax.tree_util.keystr(path))


@pytest.mark.parametrize("cases", [DEFAULT_SET, *SINGLES], ids=["every-head", *SINGLE_IDS])
def test_exported_program_serves_every_shape_as_eager(cases, make_model):
    models, limit, runs = _reference(make_model, cases)
    specs = _symbolic_specs(limit)
    exported = export.export(jax.jit(_program(models)))(_parameter_specs(models), *specs)
    restored = export.deserialize(exported.serialize())
    # Still symbolic after the round trip (the ids are the last six flat arguments).
    assert [str(aval.shape) for aval in restored.in_avals[-6:]] == [str(spec.shape) for spec in specs]
    params = {key: model.params for key, model in models.items()}
    for inputs, expected in runs:
        actual = restored.call(params, *inputs)
        for key in models:
            _assert_matches(actual[key], expected[key], f"{key} at {inputs[0].shape}")


@pytest.mark.parametrize("kind", POSITION_KINDS)
def test_sequence_bound_is_the_export_constraint_and_eager_keeps_its_error(kind, make_model):
    models = _models(make_model, [("Model", kind)])
    model, limit = models[f"Model-{kind}"], _longest(models)
    forward, params = jax.jit(_program(models)), _parameter_specs(models)

    with pytest.raises(ValueError, match=rf"no upper bound.*'s <= {limit}'") as error:
        export.export(forward)(params, *_symbolic_specs(None))
    assert "\n" not in str(error.value) and len(str(error.value)) <= 300

    exported = export.export(forward)(params, *_symbolic_specs(limit))
    too_long = _inputs(model.config, (2, limit + 1))
    with pytest.raises(ValueError, match=f"s <= {limit}"):  # JAX's own check of the constraint
        exported.call({f"Model-{kind}": model.params}, *too_long)
    with pytest.raises(ValueError, match="longer than the position table") as eager_error:
        model(too_long[0], too_long[1])
    with pytest.raises(ValueError) as core_error:  # eager gives exactly the core's message
        check_sequence_length(model.config, 0, limit + 1)
    assert str(eager_error.value) == str(core_error.value)


@pytest.mark.parametrize("cases", [JAX2TF_SET, *SINGLES], ids=["choices-and-decoder", *SINGLE_IDS])
def test_polymorphic_jax2tf_runs_in_tensorflow_as_eager(cases, make_model):
    tf = pytest.importorskip("tensorflow", reason="jax2tf needs TensorFlow (pip install 'xlmr[tf]')")
    try:
        from jax.experimental import jax2tf
    except ImportError as error:  # pragma: no cover - a JAX without jax2tf
        pytest.skip(f"jax.experimental.jax2tf is not available in this JAX: {error}")

    models, limit, runs = _reference(make_model, cases)
    converted = jax2tf.convert(
        _program(models),
        polymorphic_shapes=[None] + ["(n, s)"] * 3 + ["(b, c, s)"] * 3,
        polymorphic_constraints=[f"s <= {limit}"],
    )
    # Parameters as TF variables (the usual serving layout); ids of any batch and length.
    variables = jax.tree_util.tree_map(tf.Variable, {key: model.params for key, model in models.items()})
    signature = [jax.tree_util.tree_map(lambda v: tf.TensorSpec(v.shape, v.dtype), variables)]
    flat, choices = tf.TensorSpec([None, None], tf.int32), tf.TensorSpec([None, None, None], tf.int32)
    signature += [flat] * 3 + [choices] * 3
    serve = tf.function(converted, autograph=False, input_signature=signature)
    for inputs, expected in runs:
        actual = jax.tree_util.tree_map(np.asarray, serve(variables, *inputs))
        for key in models:
            _assert_matches(actual[key], expected[key], f"jax2tf {key} at {inputs[0].shape}")
    assert serve.experimental_get_tracing_count() == 1  # one TF graph for every shape

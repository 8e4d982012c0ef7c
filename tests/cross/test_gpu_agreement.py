"""The frameworks agree on a GPU as on the CPU; bfloat16 stays within a derived bound.

One body per comparison, two placements. A `Placement` names the torch device and the JAX
platform a test runs on: `GPU` ("cuda", "gpu") for the tests marked `gpu`, which skip
themselves (saying why) when torch sees no CUDA device or JAX has no GPU backend; `CPU`
("cpu", "cpu") for a subset of the same cases in ordinary CI, so a bug in the
device-placement and precision code shows up without a GPU. TensorFlow always runs on the
CPU and is compared against both; where it is not installed (the GPU image has none) only
its comparisons skip. The float64 reference is xlmr_torch on the CPU.

float32. TF32 keeps 10 mantissa bits (relative error ~5e-4 per product), so it is turned
off for the GPU runs: torch's `backends.cuda.matmul.allow_tf32` and
`backends.cudnn.allow_tf32` (restored afterwards) and JAX's
`default_matmul_precision("highest")`. Bounds are DESIGN.md's max |diff|: 1e-4 on a GPU,
1e-5 for the CPU runs of the same code. Every head, every position kind, a padded batch;
logits, hidden states, attentions and loss; the fused attention path and the explicit one;
the decoder with cross-attention and a key/value cache.

bfloat16. The same checkpoint loaded with bfloat16 compute (torch `dtype=torch.bfloat16`,
Flax `dtype=jnp.bfloat16`) against float32 on the same device, output by output:

    max |bf16 - fp32| <= 8 * u * (L + 1) * max |fp32|,    u = 2**-8 (bfloat16 unit roundoff)

bfloat16 keeps 8 significant bits, so every rounding is off by at most u relative. LayerNorm
holds the residual stream at a fixed scale, so errors are best counted relative to it. A
layer rounds its input, q/k/v, the attention output, the residual sum, a LayerNorm, the
intermediate activation, the output projection and a second residual sum and LayerNorm;
with fp32 accumulation in the matmuls (torch and XLA both do) that is about 8 roundings of
at most u each, added up in the worst case. L layers plus the embeddings/head stage give
L + 1 such stages. The bound is taken relative to each output's own scale (max |fp32|):
9.4e-2 of it for the tiny config (L = 2), so an O(1) change -- a padding mask lost to
overflow, an inf or a NaN -- still fails; so does a "bfloat16" run that equals float32
exactly (it never computed in bfloat16).

Measured on the CPU (torch 2.13, jax 0.10.2; tiny config: hidden 32, 2 layers, 4 heads),
over every head and position kind, in units of u * max |fp32|: torch 4.6 at worst (a
classifier's logits, whose scale is ~0.07, small beside the hidden states they are
computed from), 4.0 for hidden states, 1.3 for attention probabilities, 0.2 for losses;
Flax 3.2 / 3.1 / 1.1 / 0.3 (it also takes softmax in float32). The bound is 24: about
five times the worst measurement. GPU matmul and attention kernels also accumulate
bfloat16 products in float32 (at these inner sizes cuBLAS splits no reduction), so the
same bound applies there.

On a GPU machine: `pytest -m gpu tests/cross` runs these (and verify's GPU test) alone.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

import numpy as np
import pytest

from conversion.verify import torch_full_float32
from tests.cross.harness import (
    HEADS,
    OUTPUT_TOLERANCE,
    POSITION_KINDS,
    decoder_inputs,
    example_inputs,
    flatten,
    load_adapter,
    max_abs_diff,
)

GPU_TOLERANCE = 1e-4
BFLOAT16_UNIT_ROUNDOFF = 2.0**-8
ROUNDINGS_PER_STAGE = 8


@dataclass(frozen=True)
class Placement:
    """Where a comparison runs: the torch device and the JAX platform, and its float32 bound."""

    name: str
    torch_device: str
    jax_platform: str
    tolerance: float


CPU = Placement("cpu", "cpu", "cpu", OUTPUT_TOLERANCE)
GPU = Placement("gpu", "cuda", "gpu", GPU_TOLERANCE)

# Each pair compared; "tf" always runs on the CPU, "float64" is torch on the CPU in float64.
COMPARISONS = [("torch", "float64"), ("flax", "float64"), ("torch", "flax"), ("torch", "tf"), ("flax", "tf")]
COMPARISON_IDS = [f"{a}-vs-{b}" for a, b in COMPARISONS]
OPTION_SETS = {
    "fused": {},  # the fused attention kernel where the framework has one
    "explicit": {"output_hidden_states": True, "output_attentions": True},
}


def cases(gpu_cases, cpu_cases):
    """Parameters `(*case, placement)`: every GPU case marked `gpu`, and the CPU subset."""
    return [
        pytest.param(*case, GPU, marks=pytest.mark.gpu, id="-".join(("gpu", *case))) for case in gpu_cases
    ] + [pytest.param(*case, CPU, id="-".join(("cpu", *case))) for case in cpu_cases]


ALL_CASES = [(head, kind) for head in HEADS for kind in POSITION_KINDS]
# On the CPU, a subset: both relative kinds, one- and two-logit heads. (test_agreement.py
# covers every case on the CPU; new input shapes cost Flax seconds of op compilation.)
CPU_CASES = [
    ("ForMaskedLM", "absolute"),
    ("ForTokenClassification", "relative_key"),
    ("ForQuestionAnswering", "relative_key_query"),
]


# ---------------------------------------------------------------- precision
def bfloat16_bound(config, reference: np.ndarray) -> float:
    """The module docstring's bound for one output, from its float32 value."""
    scale = float(np.max(np.abs(reference))) if reference.size else 0.0
    stages = config.num_hidden_layers + 1
    return ROUNDINGS_PER_STAGE * BFLOAT16_UNIT_ROUNDOFF * stages * scale


# ---------------------------------------------------------------- the sides
class TorchSide:
    """xlmr_torch with the model and every input on `device`, computing in `dtype`."""

    def __init__(self, device: str, dtype: str):
        adapter = load_adapter("torch")
        import torch

        if device == "cuda" and not torch.cuda.is_available():
            pytest.skip("torch sees no CUDA device")
        self.adapter, self.torch = adapter, torch
        self.device = torch.device(device)
        self.dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float64": torch.float64}[dtype]

    def load(self, directory, head):
        if self.dtype == self.torch.bfloat16:
            model = self.adapter.load(directory, head, dtype=self.dtype)  # the user's bfloat16 path
        else:
            model = self.adapter.load(directory, head).to(self.dtype)
        return model.to(self.device)

    def _to_device(self, value):
        if isinstance(value, (tuple, list)):
            return tuple(self._to_device(v) for v in value)
        if isinstance(value, np.ndarray):
            tensor = self.torch.from_numpy(value)
            # Float inputs (encoder states, a cache) arrive in float64 and follow the model's dtype.
            return (tensor.to(self.dtype) if tensor.is_floating_point() else tensor).to(self.device)
        return value

    def _to_host(self, value):
        if isinstance(value, (tuple, list)):
            return tuple(self._to_host(v) for v in value)
        assert value.device.type == self.device.type, f"an output is on {value.device}, not {self.device}"
        value = value.detach().cpu()
        return (value.double() if value.is_floating_point() else value).numpy()

    def forward(self, model, inputs, **options):
        model.eval()
        arguments = {key: self._to_device(value) for key, value in {**inputs, **options}.items()}
        with self.torch.no_grad(), torch_full_float32():
            out = model(**arguments, return_dict=True)
        return {key: self._to_host(value) for key, value in out.items()}


class FlaxSide:
    """xlmr_flax with its parameters committed to the first device of `platform`."""

    def __init__(self, platform: str, dtype: str):
        adapter = load_adapter("flax")
        import jax
        import jax.numpy as jnp

        try:
            self.device = jax.devices(platform)[0]
        except RuntimeError as error:
            pytest.skip(f"JAX has no {platform} backend: {error}")
        self.adapter, self.jax = adapter, jax
        self.dtype = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}[dtype]

    def load(self, directory, head):
        with self.jax.default_device(self.device):
            model = self.adapter.load(directory, head, dtype=self.dtype)
        model.params = self.jax.device_put(model.params, self.device)
        return model

    def _to_host(self, value):
        if isinstance(value, (tuple, list)):
            return tuple(self._to_host(v) for v in value)
        assert value.devices() == {self.device}, f"an output is on {value.devices()}, not {self.device}"
        array = np.asarray(self.jax.device_get(value))
        return array if np.issubdtype(array.dtype, np.integer) else array.astype(np.float64)

    def forward(self, model, inputs, **options):
        with self.jax.default_device(self.device), self.jax.default_matmul_precision("highest"):
            out = model(**inputs, **options, return_dict=True)
        return {key: self._to_host(value) for key, value in out.items()}


class TensorFlowSide:
    """xlmr_tf through its harness adapter, held on the CPU even where TensorFlow sees a GPU."""

    def __init__(self):
        try:
            importlib.import_module("tensorflow")
        except ImportError as error:
            pytest.skip(f"TensorFlow is not installed, so its comparisons are skipped: {error}")
        import tensorflow as tf

        self.adapter, self.tf = load_adapter("tf"), tf

    def load(self, directory, head):
        with self.tf.device("/CPU:0"):
            return self.adapter.load(directory, head)

    def forward(self, model, inputs, **options):
        with self.tf.device("/CPU:0"):
            return self.adapter.forward(model, inputs, **options)


def make_side(name: str, placement: Placement, dtype: str = "float32"):
    if name == "torch":
        return TorchSide(placement.torch_device, dtype)
    if name == "flax":
        return FlaxSide(placement.jax_platform, dtype)
    if name == "tf":
        return TensorFlowSide()
    assert name == "float64" and dtype == "float32", (name, dtype)
    return TorchSide("cpu", "float64")


# ---------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def outputs(checkpoint):
    """`outputs(side, placement, head, kind, dtype)` -> {option set: outputs}, each run once.

    TensorFlow and the float64 reference run on the CPU whatever the placement, so one run
    serves both placements."""
    cache = {}

    def run(name, placement, head, kind, dtype="float32"):
        where = placement.name if name in ("torch", "flax") else "cpu"
        key = (name, where, head, kind, dtype)
        if key not in cache:
            side = make_side(name, placement, dtype)
            directory, config = checkpoint(head, position_embedding_type=kind)
            model = side.load(directory, head)
            inputs = example_inputs(head, config)
            cache[key] = {
                option_set: side.forward(model, inputs, **options)
                for option_set, options in OPTION_SETS.items()
            }
        return cache[key]

    return run


def assert_close(out_a, out_b, tolerance, what):
    # Written as `not diff <= tolerance`, a NaN counts as a failure too.
    failing = {field: diff for field, diff in max_abs_diff(out_a, out_b).items() if not diff <= tolerance}
    assert not failing, f"{what}: differences above {tolerance}: {failing}"


# ---------------------------------------------------------------- float32
@pytest.mark.parametrize(("head", "kind", "placement"), cases(ALL_CASES, CPU_CASES))
@pytest.mark.parametrize("comparison", COMPARISONS, ids=COMPARISON_IDS)
def test_float32_outputs_agree(comparison, head, kind, placement, outputs):
    a, b = (outputs(name, placement, head, kind) for name in comparison)
    for option_set in OPTION_SETS:
        assert head == "Model" or "loss" in a[option_set]
        assert_close(
            a[option_set], b[option_set], placement.tolerance, f"{comparison} {head} {kind} {option_set}"
        )


@pytest.fixture(scope="module")
def decoder_outputs(checkpoint):
    """`decoder_outputs(side, placement, kind)` -> (prefix outputs, cached-step outputs) of a
    decoder with cross-attention: four tokens with `use_cache`, then one more from the cache."""
    cache = {}

    def run(name, placement, kind):
        where = placement.name if name in ("torch", "flax") else "cpu"
        if (name, where, kind) in cache:
            return cache[name, where, kind]
        side = make_side(name, placement)
        directory, config = checkpoint(
            "ForCausalLM", position_embedding_type=kind, is_decoder=True, add_cross_attention=True
        )
        prefix, step, encoder = decoder_inputs(config)
        model = side.load(directory, "ForCausalLM")
        first = side.forward(model, {**prefix, **encoder}, use_cache=True)
        second = side.forward(
            model, {**step, **encoder}, use_cache=True, past_key_values=first["past_key_values"]
        )
        cache[name, where, kind] = (first, second)
        return first, second

    return run


@pytest.mark.parametrize(
    ("kind", "placement"), cases([(kind,) for kind in POSITION_KINDS], [("relative_key_query",)])
)
@pytest.mark.parametrize("comparison", COMPARISONS, ids=COMPARISON_IDS)
def test_decoder_with_cross_attention_and_cache_agrees(comparison, kind, placement, decoder_outputs):
    (first_a, second_a), (first_b, second_b) = (decoder_outputs(name, placement, kind) for name in comparison)
    assert len(first_a["past_key_values"][0]) == 4  # self and cross keys and values
    assert_close(first_a, first_b, placement.tolerance, f"{comparison} {kind} prefix")
    assert_close(second_a, second_b, placement.tolerance, f"{comparison} {kind} cached step")


@pytest.mark.parametrize("matmul_precision", ["high", "medium"])
def test_torch_full_float32_turns_tf32_off_and_restores_the_settings(matmul_precision):
    torch = pytest.importorskip("torch")

    saved = (torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32)
    try:
        torch.set_float32_matmul_precision(matmul_precision)  # both allow TF32 matmuls
        torch.backends.cudnn.allow_tf32 = True
        with torch_full_float32():
            assert not torch.backends.cuda.matmul.allow_tf32
            assert torch.backends.cuda.matmul.fp32_precision == "ieee"
            assert not torch.backends.cudnn.allow_tf32
        assert torch.get_float32_matmul_precision() == matmul_precision
        assert torch.backends.cuda.matmul.allow_tf32
        assert torch.backends.cudnn.allow_tf32
    finally:
        torch.set_float32_matmul_precision(saved[0])
        torch.backends.cudnn.allow_tf32 = saved[1]


# ---------------------------------------------------------------- bfloat16
@pytest.mark.parametrize(("head", "kind", "placement"), cases(ALL_CASES, CPU_CASES))
@pytest.mark.parametrize("framework", ["torch", "flax"])
def test_bfloat16_stays_within_the_bound_of_float32(framework, head, kind, placement, outputs, checkpoint):
    _, config = checkpoint(head, position_embedding_type=kind)
    float32 = outputs(framework, placement, head, kind)
    bfloat16 = outputs(framework, placement, head, kind, dtype="bfloat16")
    differences = []
    for option_set in OPTION_SETS:
        reference = {
            k: v for name, value in float32[option_set].items() for k, v in flatten(value, name).items()
        }
        for field, diff in max_abs_diff(bfloat16[option_set], float32[option_set]).items():
            bound = bfloat16_bound(config, reference[field])
            assert diff <= bound, (
                f"{framework} {head} {kind} {option_set}: bfloat16 {field} is off by {diff:.3g} "
                f"(> {bound:.3g} = {ROUNDINGS_PER_STAGE} * 2**-8 * {config.num_hidden_layers + 1} "
                f"* max |float32| {np.max(np.abs(reference[field])):.3g})"
            )
            differences.append(diff)
    # Identical numbers would mean the bfloat16 model never computed in bfloat16.
    assert max(differences) > 0, f"{framework} {head}: bfloat16 outputs equal float32 exactly"

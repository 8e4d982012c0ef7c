"""`verify`: every installed framework, same checkpoint, same inputs, same numbers.

Each framework (torch, tf, flax) is imported only if it is installed and its package has
landed; the others are listed as skipped with the reason. A float64 PyTorch run is the
reference every framework is also compared with. Tolerances are DESIGN.md's: 1e-5 in
float32 on CPU, 1e-4 on a GPU (TF32 off), on outputs of magnitude up to 1; larger outputs
(a trained model's logits) get the same bound relative to their largest value.
"""

from __future__ import annotations

import contextlib
import importlib
import itertools
import os
from pathlib import Path

import numpy as np

from xlmr_core.architecture import detect_heads
from xlmr_core.checkpoint import canonicalize, check_shapes, describe_non_finite, non_finite, open_checkpoint
from xlmr_core.unpadding import zero_padded_positions

from .convert import read_config
from .errors import EXIT_OK, EXIT_VERIFY_FAILED, ConversionError, MissingDependencyError
from .progress import say

# TensorFlow's C++ start-up logging would bury the table.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# JAX would otherwise take 75% of the GPU at start-up, beside torch's cached memory.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

CPU_TOLERANCE = 1e-5
GPU_TOLERANCE = 1e-4
FRAMEWORKS = ("torch", "tf", "flax")

# Mixed-script sentences, so the tokenizer exercises several alphabets and lengths.
TEXTS = (
    "The quick brown fox jumps over the lazy dog.",
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "敏捷的棕色狐狸跳过了懒狗。",
    "الثعلب البني السريع يقفز فوق الكلب الكسول.",
    "तेज़ भूरी लोमड़ी आलसी कुत्ते के ऊपर कूदती है।",
    "Быстрая бурая лиса прыгает через ленивую собаку.",
)


def _output_fields(head: str, names: set[str]) -> tuple[str, ...]:
    if head == "Model":
        return (
            ("last_hidden_state", "pooler_output")
            if "pooler.dense.weight" in names
            else ("last_hidden_state",)
        )
    if head == "ForQuestionAnswering":
        return ("start_logits", "end_logits")
    return ("logits",)


# ------------------------------------------------------------------ inputs
def make_inputs(directory: Path, config, quiet: bool) -> tuple[dict[str, np.ndarray], str]:
    """A padded batch: the directory's tokenizer on `TEXTS`, else deterministic random ids."""
    max_length = min(48, config.max_sequence_length)
    if (directory / "tokenizer.json").is_file() or (directory / "sentencepiece.bpe.model").is_file():
        import xlmr_core

        fast = (directory / "tokenizer.json").is_file()
        cls = xlmr_core.XLMRobertaTokenizerFast if fast else xlmr_core.XLMRobertaTokenizer
        tokenizer = cls.from_pretrained(directory)
        batch = tokenizer(
            list(TEXTS), padding=True, truncation=True, max_length=max_length, return_tensors="np"
        )
        inputs = {k: np.asarray(batch[k], dtype=np.int64) for k in ("input_ids", "attention_mask")}
        if inputs["input_ids"].max() >= config.vocab_size:
            raise ConversionError(
                f"the tokenizer in {directory} produces id {inputs['input_ids'].max()}, "
                f"beyond the model's vocabulary of {config.vocab_size}"
            )
        return inputs, f"{len(TEXTS)} multilingual sentences, {cls.__name__} from {directory}"
    rng = np.random.default_rng(0)
    length = min(16, max_length)
    ids = rng.integers(min(4, config.vocab_size - 1), config.vocab_size, size=(4, length))
    ids[:, 0], ids[:, -1] = config.bos_token_id or 0, config.eos_token_id or 0
    mask = np.ones_like(ids)
    pad = config.pad_token_id if config.pad_token_id is not None else 1
    ids[1, length // 2 :], mask[1, length // 2 :] = pad, 0  # one padded row
    say(f"note: no tokenizer files in {directory}; using deterministic random token ids", quiet=quiet)
    return {"input_ids": ids, "attention_mask": mask}, "deterministic random token ids (no tokenizer in DIR)"


def inputs_for(head: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    if head != "ForMultipleChoice":
        return inputs
    # Two choices per example: each row paired with the batch in reverse order.
    return {k: np.stack([v, v[::-1]], axis=1) for k, v in inputs.items()}


# ------------------------------------------------------------------ runners
def _unavailable(framework: str, device: str) -> str | None:
    """Why `framework` cannot run here, or None."""
    package = {"torch": "xlmr_torch", "tf": "xlmr_tf", "flax": "xlmr_flax"}[framework]
    try:
        importlib.import_module(package)
    except ImportError as error:
        return f"{package} not available ({error})"
    if device != "gpu":
        return None
    if framework == "torch":
        import torch

        return None if torch.cuda.is_available() else "torch sees no CUDA GPU"
    if framework == "tf":
        import tensorflow as tf

        return None if tf.config.list_physical_devices("GPU") else "TensorFlow sees no GPU"
    import jax

    try:
        jax.devices("gpu")
    except RuntimeError:
        return "JAX sees no GPU"
    return None


@contextlib.contextmanager
def torch_full_float32():
    """TF32 off for cuBLAS matmuls and cuDNN inside the block; the previous settings after.

    Only the legacy switches are used: torch >= 2.9 refuses to read them back once they are
    mixed with the per-backend `fp32_precision` ones."""
    import torch

    matmul_precision = torch.get_float32_matmul_precision()  # "high" and "medium" allow TF32
    cudnn_tf32 = torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(matmul_precision)
        torch.backends.cudnn.allow_tf32 = cudnn_tf32


@contextlib.contextmanager
def tf_full_float32():
    """TensorFlow's TF32 execution off inside the block; the previous setting after."""
    import tensorflow as tf

    enabled = tf.config.experimental.tensor_float_32_execution_enabled()
    tf.config.experimental.enable_tensor_float_32_execution(False)
    try:
        yield
    finally:
        tf.config.experimental.enable_tensor_float_32_execution(enabled)


def run_torch(
    directory: Path, head: str, inputs, fields, device: str, float64: bool = False, unpadded: bool = False
) -> dict:
    import torch

    import xlmr_torch

    target = "cuda" if device == "gpu" else "cpu"
    with torch_full_float32():
        model = getattr(xlmr_torch, f"XLMRoberta{head}").from_pretrained(directory)
        model = model.double() if float64 else model
        model.to(target)
        with torch.no_grad():
            out = model(**{k: torch.from_numpy(v).to(target) for k, v in inputs.items()}, unpadded=unpadded)
    return {f: out[f].detach().cpu().double().numpy() for f in fields}


def run_tf(directory: Path, head: str, inputs, fields, device: str, unpadded: bool = False) -> dict:
    import tensorflow as tf

    import xlmr_tf

    with tf_full_float32(), tf.device("/GPU:0" if device == "gpu" else "/CPU:0"):
        model = getattr(xlmr_tf, f"TFXLMRoberta{head}").from_pretrained(directory)
        out = model({k: tf.constant(v) for k, v in inputs.items()}, training=False, unpadded=unpadded)
    return {f: np.asarray(out[f], dtype=np.float64) for f in fields}


def run_flax(directory: Path, head: str, inputs, fields, device: str, unpadded: bool = False) -> dict:
    import jax

    import xlmr_flax

    target = jax.devices("gpu" if device == "gpu" else "cpu")[0]
    with jax.default_device(target), jax.default_matmul_precision("highest"):
        model = getattr(xlmr_flax, f"FlaxXLMRoberta{head}").from_pretrained(directory)
        out = model(**inputs, unpadded=unpadded)
    return {f: np.asarray(out[f], dtype=np.float64) for f in fields}


RUNNERS = {"torch": run_torch, "tf": run_tf, "flax": run_flax}


# ------------------------------------------------------------------ the command
def compare(
    directory: Path,
    config,
    names: set[str],
    placements: dict[str, str],
    tolerance: float,
    quiet: bool,
    unpadded: bool = True,
):
    """Rows `(head, output, comparison, max |diff| or None, passed, note)` and the input description.

    `names` are the checkpoint's tensor names; `placements` maps each framework to run onto
    its device ("cpu" or "gpu"). With `unpadded` the frameworks run on the real tokens only and
    the float64 run stays padded, its padded positions zeroed: an independent path to hold
    them against."""
    frameworks = list(placements)
    heads = detect_heads(names, config)
    inputs, described = make_inputs(directory, config, quiet)
    rows = []
    for head in heads:
        fields = _output_fields(head, names)
        head_inputs = inputs_for(head, inputs)
        results: dict[str, dict | str] = {}
        for framework in frameworks:
            placement = placements[framework]
            say(f"running {head} in {framework} ({placement})", quiet=quiet)
            try:
                results[framework] = RUNNERS[framework](
                    directory, head, head_inputs, fields, placement, unpadded=unpadded
                )
            except Exception as error:  # a framework that fails is reported, not fatal
                results[framework] = f"{type(error).__name__}: {error}"
        if "torch" in frameworks:
            try:
                results["float64"] = run_torch(directory, head, head_inputs, fields, "cpu", float64=True)
                if unpadded:
                    results["float64"] = zero_padded_positions(
                        head, results["float64"], head_inputs["attention_mask"]
                    )
            except Exception as error:
                results["float64"] = f"{type(error).__name__}: {error}"
        pairs = [(fw, "float64") for fw in frameworks if "float64" in results]
        pairs += list(itertools.combinations(frameworks, 2))
        for a, b in pairs:
            for f in fields:
                label = f"{a} vs {b}"
                failed = [r for r in (results[a], results[b]) if isinstance(r, str)]
                if failed:
                    rows.append((head, f, label, None, False, failed[0].splitlines()[0][:120]))
                    continue
                x, y = results[a][f], results[b][f]
                if x.shape != y.shape:
                    rows.append((head, f, label, None, False, f"shapes differ: {x.shape} vs {y.shape}"))
                    continue
                diff = float(np.max(np.abs(x - y))) if x.size else 0.0
                # float32 rounding grows with the values rounded: a trained model's logits of
                # ~20 carry errors ~20x those of a random tiny model's ~1, so the bound scales.
                scale = max(1.0, float(np.max(np.abs(x))) if x.size else 0.0)
                rows.append((head, f, label, diff, bool(diff <= tolerance * scale), ""))
    return rows, described


def verify(
    directory: str | os.PathLike,
    *,
    device: str = "cpu",
    frameworks=None,
    tolerance: float | None = None,
    unpadded: bool = True,
    quiet: bool = False,
) -> int:
    """Print the agreement table for `directory`; return 0 on PASS, 1 on FAIL.

    `unpadded` (the default) runs every framework with `unpadded=True`; the float64 torch run
    stays on the padded path."""
    directory = Path(directory)
    with open_checkpoint(directory) as checkpoint:  # any format: every framework reads them all
        config = read_config(directory)
        tensors = canonicalize(checkpoint.tensors, config.tie_word_embeddings)
        check_shapes(tensors, config, checkpoint.files[0])
        names = set(checkpoint.tensors)
        unfinite = describe_non_finite(non_finite(tensors))
    requested = list(dict.fromkeys(frameworks or FRAMEWORKS))
    tolerance = tolerance if tolerance is not None else (GPU_TOLERANCE if device == "gpu" else CPU_TOLERANCE)
    placements, skipped, on_cpu = {}, {}, {}
    for framework in requested:
        reason = _unavailable(framework, device)
        if reason is None:
            placements[framework] = device
        elif device == "gpu" and framework == "tf" and _unavailable("tf", "cpu") is None:
            # TensorFlow often has no GPU build where torch and JAX do; its CPU run is still a
            # third independent implementation to hold the GPU results against.
            placements[framework], on_cpu[framework] = "cpu", reason
        else:
            skipped[framework] = reason
    if not any(placement == device for placement in placements.values()):
        detail = "; ".join(f"{k}: {v}" for k, v in {**on_cpu, **skipped}.items())
        if device == "gpu":
            raise MissingDependencyError(f"--device gpu: no framework here can use a GPU ({detail})")
        raise MissingDependencyError(f"no framework to verify with ({detail}); pip install 'xlmr[torch]'")

    rows, described = compare(directory, config, names, placements, tolerance, quiet, unpadded)

    print(f"checkpoint  {directory}")
    print(f"inputs      {described}")
    if unpadded:
        print("path        unpadded=True (real tokens only; the float64 run padded, padding zeroed)")
    else:
        print("path        padded (--padded)")
    print(f"device      {device}; tolerance {tolerance:g} (max |diff| <= tolerance x max(1, max |output|))")
    for line in unfinite:  # such weights load; the comparisons below will say what they do
        print(f"non-finite  {line}")
    for framework, reason in on_cpu.items():
        print(f"on cpu      {framework}: {reason}")
    for framework, reason in skipped.items():
        print(f"skipped     {framework}: {reason}")
    width = max([len(r[0]) for r in rows] + [4])
    print(f"{'head':<{width}}  {'output':<18} {'comparison':<18} {'max|diff|':>10}  result")
    for head, field, label, diff, passed, note in rows:
        shown = "-" if diff is None else f"{diff:.2e}"
        verdict = "PASS" if passed else "FAIL"
        print(f"{head:<{width}}  {field:<18} {label:<18} {shown:>10}  {verdict}{'  ' + note if note else ''}")
    failures = sum(not r[4] for r in rows)
    if failures:
        print(
            f"FAIL: {failures} of {len(rows)} comparisons above "
            f"{tolerance:g} x max(1, max |output|) or not run"
        )
        return EXIT_VERIFY_FAILED
    print(f"PASS: {len(rows)} comparisons within {tolerance:g} x max(1, max |output|)")
    return EXIT_OK

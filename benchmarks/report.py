"""Run every benchmark and write benchmarks/RESULTS.md with a throughput-vs-length plot.

For each framework (PyTorch, TensorFlow, Flax), ours and the reference implementation of the
same framework (transformers 4.57.6) side by side at xlm-roberta-base size, batch 8 x 128,
float32, CPU: forward and one training-step throughput, the ratio ours/reference and the ratio
to the reference PyTorch, the fraction of the machine's measured matmul peak, load time and peak
memory of `from_pretrained`, tokenizer throughput, forward throughput at sequence lengths
64 to 512 (benchmarks/throughput_vs_length.png), real-length batches padded and unpadded
(benchmarks/bench_unpadded.py) with throughput against the padding fraction
(benchmarks/throughput_vs_padding.png), bf16 on CPU and the masked-LM training step.

    python benchmarks/report.py                    # the real run: ~30 min on 2 cores
    python benchmarks/report.py --quick --output /tmp/bench   # small config, a couple of minutes

Measurements run one at a time, each framework in its own process (benchmarks/_workers.py),
ours and the reference alternating within it round by round (who goes first rotates), so the
per-round ratios show how much the machine's noise moves each ratio.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent
REPO = BENCHMARKS.parent
sys.path[:0] = [str(REPO), str(BENCHMARKS)]

from _flops import FORMULA, forward_flops, train_step_flops  # noqa: E402

from xlmr_core import XLMRobertaConfig  # noqa: E402

PLOT_NAME = "throughput_vs_length.png"
PADDING_PLOT_NAME = "throughput_vs_padding.png"
TASK_TIMEOUT_S = 3600  # one measurement process; the longest (Flax, base size) takes ~10 min on 2 cores
MATPLOTLIB_MISSING = (
    "the plot needs matplotlib: pip install 'xlmr[bench]' (the bench extra), or pass --no-plot "
    "to write RESULTS.md without it"
)
FRAMEWORKS = ("torch", "tf", "flax")
PARTS = ("torch", "tf", "flax", "load", "tokenizers")
FRAMEWORK_NAMES = {"torch": "PyTorch", "tf": "TensorFlow", "flax": "Flax"}
FAST_PATH = {
    "torch": "eager, `torch.inference_mode()` for the forward; reference attention: SDPA",
    "tf": "`tf.function(jit_compile=True)` (XLA) for the forward; Keras `compile(jit_compile=True)` + "
    "`train_on_batch` for the step",
    "flax": "`jax.jit`, compiled ahead of time (`lower().compile()`), train state donated",
}
LIBRARIES = (
    "numpy",
    "torch",
    "tensorflow",
    "keras",
    "tf-keras",
    "jax",
    "jaxlib",
    "flax",
    "optax",
    "transformers",
    "tokenizers",
    "sentencepiece",
    "matplotlib",
)
QUICK_SHAPE = {
    "vocab_size": 1000,
    "hidden_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 512,
}
# (framework, implementation, directory, file it reads): every implementation's load path.
LOAD_CASES = (
    ("torch", "ours", "shared", "model.safetensors"),
    ("torch", "reference", "shared", "model.safetensors"),
    ("tf", "ours", "shared", "model.safetensors"),
    ("tf", "reference", "converted", "tf_model.h5"),
    ("tf", "reference", "shared", "model.safetensors"),
    ("flax", "ours", "shared", "model.safetensors"),
    ("flax", "reference", "converted", "flax_model.msgpack"),
    ("flax", "reference", "shared", "model.safetensors"),
)


# ----------------------------------------------------------------------------- settings


def make_settings(args) -> dict:
    """Everything the workers need, the same for ours and the reference."""
    threads = args.threads or len(os.sched_getaffinity(0))
    if args.quick:
        config = XLMRobertaConfig.from_pretrained("xlm-roberta-base", num_labels=2, **QUICK_SHAPE)
        sizes = dict(
            length=32, sweep_tokens=1024, matmul_size=1024, count=1000, batch_size=250, tok_repeats=1
        )
    else:
        config = XLMRobertaConfig.from_pretrained("xlm-roberta-base", num_labels=2)
        sizes = dict(
            length=128, sweep_tokens=2048, matmul_size=2048, count=10_000, batch_size=1000, tok_repeats=3
        )
    return {
        "config": config.to_dict(),
        "threads": threads,
        "batch": 8,
        "length": sizes["length"],
        "repeats": args.repeats,
        "sweep_lengths": [64, 128, 256, 512],
        "sweep_tokens": sizes["sweep_tokens"],
        "sweep_repeats": args.sweep_repeats,
        "unpadded_rounds": args.repeats,
        "matmul_size": sizes["matmul_size"],
        "matmul_repeats": 5,
        "tokenizers": {
            "count": sizes["count"],
            "batch_size": sizes["batch_size"],
            "repeats": sizes["tok_repeats"],
        },
    }


# The reference library imports every framework it finds unless told not to: each process
# gets only its own, so that import time and memory are the framework's.
OTHER_FRAMEWORKS_OFF = {
    "torch": {"USE_TF": "0", "USE_FLAX": "0"},
    "tf": {"USE_TORCH": "0", "USE_FLAX": "0"},
    "flax": {"USE_TF": "0", "USE_TORCH": "0"},
    None: {"USE_TF": "0", "USE_TORCH": "0", "USE_FLAX": "0"},
}


def worker_env(threads: int, framework: str | None, legacy_keras: bool) -> dict:
    """The same thread settings for every process; Keras 2 only where asked."""
    env = dict(os.environ)
    env.pop("TF_USE_LEGACY_KERAS", None)
    pythonpath = [str(REPO), env.get("PYTHONPATH", "")]
    env.update(
        PYTHONPATH=os.pathsep.join(filter(None, pythonpath)),
        OMP_NUM_THREADS=str(threads),
        MKL_NUM_THREADS=str(threads),
        TF_NUM_INTRAOP_THREADS=str(threads),
        TF_NUM_INTEROP_THREADS="1",
        TF_CPP_MIN_LOG_LEVEL="3",
        TRANSFORMERS_VERBOSITY="error",
        TOKENIZERS_PARALLELISM="false",
    )
    env.update(OTHER_FRAMEWORKS_OFF[framework])
    if legacy_keras:
        env["TF_USE_LEGACY_KERAS"] = "1"
    return env


class Runner:
    """Runs worker tasks one at a time and keeps what each returned (or why it failed)."""

    def __init__(self, scratch: Path, threads: int, total: int):
        self.scratch, self.threads, self.total, self.done = scratch, threads, total, 0
        self.failures: list[str] = []
        self.load_averages: list[float] = []  # 1-minute load average as each task ended

    def __call__(
        self, label: str, task: str, settings: dict, framework: str | None, legacy_keras: bool = False
    ) -> dict | None:
        self.done += 1
        settings_path = self.scratch / f"settings-{self.done}.json"
        result_path = self.scratch / f"result-{self.done}.json"
        settings_path.write_text(json.dumps(settings))
        print(f"[{self.done:2d}/{self.total}] {label} ...", end="", file=sys.stderr, flush=True)
        start = time.perf_counter()
        try:
            done = subprocess.run(
                [sys.executable, str(BENCHMARKS / "_workers.py"), task, str(settings_path), str(result_path)],
                env=worker_env(self.threads, framework, legacy_keras),
                capture_output=True,
                text=True,
                cwd=REPO,
                timeout=TASK_TIMEOUT_S,
            )
        except subprocess.TimeoutExpired:
            self.failures.append(f"{label}: still running after {TASK_TIMEOUT_S} s, stopped")
            print(" TIMED OUT", file=sys.stderr, flush=True)
            return None
        elapsed = time.perf_counter() - start
        if done.returncode != 0 or not result_path.is_file():
            lines = [line for line in done.stderr.strip().splitlines() if line.strip()] or ["(no output)"]
            self.failures.append(f"{label}: exit status {done.returncode}: {lines[-1]}")
            print(f" FAILED after {elapsed:.0f} s; its last lines:", file=sys.stderr)
            print("\n".join("    " + line for line in lines[-15:]), file=sys.stderr, flush=True)
            return None
        print(f" {elapsed:.0f} s", file=sys.stderr, flush=True)
        result = json.loads(result_path.read_text())
        self.load_averages.append(result["loadavg"][0])
        return result


# ----------------------------------------------------------------------------- the load section


def prepare_checkpoints(scratch: Path, settings: dict) -> tuple[dict, str]:
    """A random checkpoint in the shared format (`shared/`) and the same weights converted by
    `xlmr-convert convert --format tf,flax` (`converted/`: adds tf_model.h5, flax_model.msgpack)."""
    from bench_convert import build_checkpoint

    config = settings["config"]
    overrides = {key: config[key] for key in QUICK_SHAPE}
    start = time.perf_counter()
    size = build_checkpoint(scratch / "shared", "xlm-roberta-base", head="Model", **overrides)
    built = time.perf_counter() - start
    start = time.perf_counter()
    command = [sys.executable, "-m", "conversion", "convert", "--quiet", "--format", "tf,flax"]
    subprocess.run([*command, str(scratch / "shared"), str(scratch / "converted")], check=True, cwd=REPO)
    converted = time.perf_counter() - start
    directories = {"shared": scratch / "shared", "converted": scratch / "converted"}
    note = (
        f"Checkpoint: random weights of the bare model, {size / 1e6:,.0f} MB of float32 in model.safetensors "
        f"(written in {built:.1f} s); tf_model.h5 and flax_model.msgpack written from it by "
        f"`xlmr-convert convert --format tf,flax` in {converted:.1f} s."
    )
    return directories, note


# ----------------------------------------------------------------------------- the report


def machine_facts() -> dict:
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next(
        (line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")), "?"
    )
    flags = next(
        (line.split(":", 1)[1].split() for line in cpuinfo.splitlines() if line.startswith("flags")), []
    )
    vector = [flag for flag in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile") if flag in flags]
    memory = "?"
    if Path("/proc/meminfo").exists():
        total_kb = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f"{total_kb / 2**20:.1f} GiB"
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "usable cores": len(os.sched_getaffinity(0)),
        "vector": ", ".join(vector) or "none of avx2/fma/avx512f",
        "memory": memory,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
    }


def fmt(value: float | None, digits: int = 0, suffix: str = "") -> str:
    if value is None:
        return "—"
    return f"{value:,.{digits}f}{suffix}"


def ratio(a: float | None, b: float | None) -> str:
    return "—" if a is None or b is None else f"{a / b:.2f}×"


def round_range(faster_times: list, slower_times: list) -> str:
    """The lowest and highest per-round throughput ratio (slower's seconds / faster's)."""
    ratios = [slow / fast for fast, slow in zip(faster_times, slower_times)]
    return "—" if not ratios else f"{min(ratios):.2f}–{max(ratios):.2f}"


def describe_config(config: XLMRobertaConfig) -> str:
    return (
        f"hidden {config.hidden_size}, {config.num_hidden_layers} layers, {config.num_attention_heads} "
        f"heads, intermediate {config.intermediate_size}, vocab {config.vocab_size:,}"
    )


def collect_throughput(results: dict, settings: dict) -> dict:
    """{(framework, implementation, workload): {"tps", "seconds", "first"}} from the worker results."""
    tokens = settings["batch"] * settings["length"]
    table = {}
    for framework in FRAMEWORKS:
        for part in results.get(framework, []):
            for workload in ("forward", "train"):
                for implementation, measured in part.get(workload, {}).items():
                    first = measured["first"] + measured.get("compile", 0.0)
                    table[framework, implementation, workload] = {
                        "tps": tokens / measured["median"],
                        "seconds": measured["median"],
                        "first": first,
                        "times": measured.get("times", []),
                    }
    return table


def machine_peak(results: dict) -> tuple[float | None, dict]:
    """The best matmul GFLOP/s any framework reached, and every measurement."""
    measured = {}
    for framework in FRAMEWORKS:
        for part in results.get(framework, []):
            measured.update(part.get("matmul_gflops", {}))
    return (max(measured.values()) if measured else None), measured


def throughput_section(results: dict, settings: dict, config: XLMRobertaConfig) -> list[str]:
    table = collect_throughput(results, settings)
    peak, _ = machine_peak(results)
    batch, length = settings["batch"], settings["length"]
    flops = {
        "forward": forward_flops(config, batch, length),
        "train": train_step_flops(config, batch, length),
    }
    lines = [
        "| framework | workload | ours tok/s | reference tok/s | ours / reference | per round "
        "| ours / ref. PyTorch | reference / ref. PyTorch | ours % of peak | reference % of peak "
        "| first call s (ours / ref.) |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for framework in FRAMEWORKS:
        for workload, label in (("forward", "forward"), ("train", "train step")):
            ours = table.get((framework, "ours", workload))
            reference = table.get((framework, "reference", workload))
            baseline = table.get(("torch", "reference", workload))

            def tps(row):
                return row["tps"] if row else None

            def percent(row, flop_count=flops[workload]):
                if not row or not peak:
                    return "—"
                return f"{100 * flop_count / row['seconds'] / (peak * 1e9):.0f} %"

            firsts = " / ".join(fmt(row["first"], 1) if row else "—" for row in (ours, reference))
            spread = round_range(ours["times"], reference["times"]) if ours and reference else "—"
            lines.append(
                f"| {FRAMEWORK_NAMES[framework]} | {label} | {fmt(tps(ours))} | {fmt(tps(reference))} "
                f"| {ratio(tps(ours), tps(reference))} | {spread} | {ratio(tps(ours), tps(baseline))} "
                f"| {ratio(tps(reference), tps(baseline))} | {percent(ours)} | {percent(reference)} "
                f"| {firsts} |"
            )
    return lines


def flops_section(results: dict, settings: dict, config: XLMRobertaConfig) -> list[str]:
    peak, measured = machine_peak(results)
    batch, length, n = settings["batch"], settings["length"], settings["matmul_size"]
    lines = [
        f"Peak: the best of {settings['matmul_repeats']} products of two {n}×{n} float32 matrices "
        f"(2n³ = {2 * n**3 / 1e9:.1f} GFLOP), after one warm-up, in each framework:",
        "",
        "| matmul | GFLOP/s |",
        "|---|--:|",
        *(f"| {name} | {value:,.1f} |" for name, value in measured.items()),
        "",
        f"Machine peak used for the % columns: **{fmt(peak, 1)} GFLOP/s** (the best of these).",
        "",
        f"FLOP count ({FORMULA}) for batch {batch} × {length} with h = {config.hidden_size}, "
        f"f = {config.intermediate_size}, L = {config.num_hidden_layers}, C = {config.num_labels}: "
        f"forward {forward_flops(config, batch, length) / 1e9:,.2f} GFLOP, "
        f"train step {train_step_flops(config, batch, length) / 1e9:,.2f} GFLOP.",
    ]
    return lines


def load_section(loads: list, note: str) -> list[str]:
    baseline = next((result for case, result in loads if case[:2] == ("torch", "ours") and result), None)
    lines = [
        note,
        "",
        "| implementation | reads | import s | from_pretrained s | first forward s | RSS after import MB "
        "| peak RSS MB | output vs ours PyTorch (max abs diff) |",
        "|---|---|--:|--:|--:|--:|--:|--:|",
    ]
    for (framework, implementation, _, source), result in loads:
        name = f"{implementation} {FRAMEWORK_NAMES[framework]}"
        if result is None:
            lines.append(f"| {name} | {source} | failed (see Failures) | | | | | |")
            continue
        if "reference_error" in result:
            lines.append(f"| {name} | {source} | cannot: `{result['reference_error'][:160]}` | | | | | |")
            continue
        difference = "—"
        if baseline is not None:
            pairs = zip(_flatten(result["output_corner"]), _flatten(baseline["output_corner"]))
            difference = f"{max(abs(a - b) for a, b in pairs):.1e}"
        lines.append(
            f"| {name} | {source} | {result['import']:.1f} | {result['load']:.2f} | {result['forward']:.2f} "
            f"| {result['rss_after_import'] / 2**20:,.0f} | {result['peak_rss'] / 2**20:,.0f} "
            f"| {difference} |"
        )
    if baseline is not None:
        scale = max(abs(x) for x in _flatten(baseline["output_corner"]))
        lines += ["", f"(Largest |output| in the compared corner: {scale:.2e}.)"]
    return lines


def _flatten(nested) -> list[float]:
    if isinstance(nested, list):
        return [x for item in nested for x in _flatten(item)]
    return [nested]


def tokenizer_section(result: dict | None, failure: str | None) -> list[str]:
    if result is None:
        return [f"Not measured: {failure or 'skipped'}."]
    rates = result["rates"]
    lines = [
        f"{result['sentences']:,} multilingual sentences (tests/core/texts.py), batch-encoded with padding, "
        f"best of the repeats; the real XLM-R vocabulary (250,002 pieces). Building all four took "
        f"{result['build_seconds']:.1f} s (both fast tokenizers convert the SentencePiece model).",
        "",
        "| tokenizer | ours sentences/s | reference sentences/s | ours / reference |",
        "|---|--:|--:|--:|",
    ]
    for kind in ("slow", "fast"):
        ours, reference = rates.get(f"ours {kind}"), rates.get(f"reference {kind}")
        lines.append(f"| {kind} | {fmt(ours)} | {fmt(reference)} | {ratio(ours, reference)} |")
    return lines


def sweep_series(results: dict) -> dict:
    """{label: {length: tokens/s}} for every implementation that ran the sweep."""
    series = {}
    for framework in FRAMEWORKS:
        for part in results.get(framework, []):
            for implementation, points in part.get("sweep", {}).items():
                if points:
                    label = f"{implementation} {FRAMEWORK_NAMES[framework]}"
                    series[label] = {
                        int(length): point["batch"] * int(length) / point["median"]
                        for length, point in points.items()
                    }
    return series


def sweep_section(series: dict, settings: dict, plotted: bool) -> list[str]:
    lengths = settings["sweep_lengths"]
    batches = ", ".join(f"{max(1, settings['sweep_tokens'] // n)} × {n}" for n in lengths)
    lines = []
    if plotted:
        lines += [f"![forward tokens/s against sequence length]({PLOT_NAME})", ""]
    else:
        lines += ["(No plot: drawn only without `--no-plot`, with matplotlib from the bench extra.)", ""]
    lines += [
        f"Forward pass, about {settings['sweep_tokens']:,} tokens per batch ({batches}); median of "
        f"{settings['sweep_repeats']} after a first call; tokens/s:",
        "",
        "| implementation | " + " | ".join(str(n) for n in lengths) + " |",
        "|---|" + "--:|" * len(lengths),
    ]
    for label, points in series.items():
        lines.append(f"| {label} | " + " | ".join(fmt(points.get(n)) for n in lengths) + " |")
    return lines


def draw_plot(series: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"PyTorch": "tab:red", "TensorFlow": "tab:orange", "Flax": "tab:blue"}
    figure, axes = plt.subplots(figsize=(8, 5))
    for label, points in series.items():
        implementation, framework = label.split(" ", 1)
        lengths = sorted(points)
        axes.plot(
            lengths,
            [points[n] for n in lengths],
            marker="o" if implementation == "ours" else "s",
            linestyle="-" if implementation == "ours" else "--",
            color=colors[framework],
            label=f"{framework}: {implementation}" + ("" if implementation == "ours" else " (transformers)"),
        )
    axes.set_xscale("log", base=2)
    axes.set_xticks(sorted({n for points in series.values() for n in points}))
    axes.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
    axes.set_xlabel("sequence length (tokens)")
    axes.set_ylabel("forward throughput (tokens/s)")
    axes.set_ylim(bottom=0)
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=8)
    axes.set_title(title, fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def measured_parts(results: dict, key: str):
    """(framework, the worker's `key` entry) for every framework whose worker measured it."""
    for framework in FRAMEWORKS:
        for part in results.get(framework, []):
            if key in part:
                yield framework, part[key]


def median_ratio(ratios: list) -> str:
    import statistics

    return "—" if not ratios else f"{statistics.median(ratios):.2f}×"


def unpadded_section(results: dict, settings: dict) -> list[str]:
    from bench_unpadded import BATCH_SIZE, LENGTHS

    rows = list(measured_parts(results, "unpadded"))
    if not rows:
        return ["Not measured."]
    workload = rows[0][1]["workload"]
    shapes = ", ".join(f"{b} × {n}" for b, n in workload["shapes"])
    lines = [
        f"The forward pass of the bare model on {len(workload['shapes'])} batches of {BATCH_SIZE} texts "
        f"({shapes}): token lengths log-normal with median {LENGTHS['median']} and σ {LENGTHS['sigma']}, "
        f"clipped to [{LENGTHS['low']}, {LENGTHS['high']}] (`benchmarks/bench_unpadded.py`), each batch "
        "right-padded to its longest text. "
        f"{workload['real_tokens']:,} real tokens of {workload['positions']:,} positions: **padding "
        f"fraction {workload['padding_fraction']:.2f}** (per batch "
        + ", ".join(f"{f:.2f}" for f in workload["per_batch_padding"])
        + "). Throughput counts real tokens only. The reference runs padded with its default attention "
        "(it has no other path); ours padded and ours with `unpadded=True`; the three alternate, "
        f"the order rotating, median of {settings['unpadded_rounds']} rounds after a first call each "
        "(compilation: XLA per token budget for ours unpadded in TF and Flax).",
        "",
        "| framework | reference tok/s | ours padded tok/s | ours unpadded tok/s | unpadded / reference "
        "| per round | unpadded / ours padded | ours padded / reference | max \\|unpadded − padded\\| |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for framework, measured in rows:
        rates = measured["tokens_per_s"]
        ratios = measured["unpadded_vs_reference"]
        spread = "—" if not ratios else f"{min(ratios):.2f}–{max(ratios):.2f}"
        lines.append(
            f"| {FRAMEWORK_NAMES[framework]} | {fmt(rates['reference'])} | {fmt(rates['ours padded'])} "
            f"| {fmt(rates['ours unpadded'])} | {median_ratio(ratios)} | {spread} "
            f"| {median_ratio(measured['unpadded_vs_padded'])} "
            f"| {median_ratio(measured['padded_vs_reference'])} "
            f"| {measured['unpadded_max_abs_diff']:.1e} |"
        )
    return lines


def padding_series(results: dict) -> dict:
    """{label: {padding fraction: real tokens/s}} from every framework's padding sweep."""
    series = {}
    for framework, sweep in measured_parts(results, "padding_sweep"):
        for fraction, measured in sweep.items():
            for name, rate in measured["tokens_per_s"].items():
                label = f"{name} {FRAMEWORK_NAMES[framework]}"
                series.setdefault(label, {})[float(fraction)] = rate
    return series


def padding_section(results: dict, settings: dict, plotted: bool) -> list[str]:
    from bench_unpadded import SWEEP_SHAPE

    series = padding_series(results)
    if not series:
        return ["Not measured."]
    fractions = sorted({f for points in series.values() for f in points})
    lines = [f"![real tokens/s against padding fraction]({PADDING_PLOT_NAME})", ""] if plotted else []
    lines += [
        f"One batch of {SWEEP_SHAPE[0]} × {SWEEP_SHAPE[1]} (row 0 full length, the others shorter) per "
        "padding fraction; forward pass, real tokens/s, median of "
        f"{settings['sweep_repeats']} interleaved rounds:",
        "",
        "| implementation | " + " | ".join(f"{f:.2f}" for f in fractions) + " |",
        "|---|" + "--:|" * len(fractions),
    ]
    for label, points in series.items():
        lines.append(f"| {label} | " + " | ".join(fmt(points.get(f)) for f in fractions) + " |")
    return lines


def draw_padding_plot(series: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"PyTorch": "tab:red", "TensorFlow": "tab:orange", "Flax": "tab:blue"}
    styles = {"reference": ("s", ":"), "ours padded": ("^", "--"), "ours unpadded": ("o", "-")}
    figure, axes = plt.subplots(figsize=(8, 5))
    for label, points in series.items():
        implementation, framework = label.rsplit(" ", 1)
        fractions = sorted(points)
        marker, linestyle = styles[implementation]
        axes.plot(
            fractions,
            [points[f] for f in fractions],
            marker=marker,
            linestyle=linestyle,
            color=colors[framework],
            label=f"{framework}: {implementation}"
            + (" (transformers)" if implementation == "reference" else ""),
        )
    axes.set_xlabel("padding fraction of the batch")
    axes.set_ylabel("forward throughput (real tokens/s)")
    axes.set_ylim(bottom=0)
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=8)
    axes.set_title(title, fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def bf16_section(results: dict, settings: dict) -> list[str]:
    rows = list(measured_parts(results, "bf16"))
    if not rows:
        return ["Not measured."]
    tokens = settings["batch"] * settings["length"]
    native = all(measured.get("native_bf16") for _, measured in rows)
    lines = (
        []
        if native
        else [
            "**This CPU has no native bf16** (no `avx512_bf16` or `amx_bf16` in /proc/cpuinfo; torch "
            "reports its CPU capability as `"
            + rows[0][1].get("capability", "AVX2")
            + "`): a bf16 product is emulated, as the matmul rows show, so bf16 is no speed-up here. "
            "The PyTorch model forward in bf16 is then not run (at the emulated rate one base-size "
            "forward takes many minutes); XLA CPU converts bf16 dots to float32 ones with conversions "
            "around them, so the Flax rows are measured.",
            "",
        ]
    )
    lines += [
        "One n × n product (n = 1024), best of 3, GFLOP/s:",
        "",
        "| matmul | GFLOP/s |",
        "|---|--:|",
    ]
    for _, measured in rows:
        for name, rate in measured.get("matmul_gflops", {}).items():
            lines.append(f"| {name} | {rate:.1f} |")
    lines += [
        "",
        f"Forward of the bare model, {settings['batch']} × {settings['length']}, interleaved rounds, "
        f"median of {settings['repeats']}. PyTorch: `model.to(torch.bfloat16)` (weights and activations "
        "in bf16) and float32 weights under `torch.autocast('cpu', dtype=torch.bfloat16)`; Flax: "
        "`dtype=jnp.bfloat16` (computation in bf16, float32 weights). The bound is the README's: "
        "8 · 2⁻⁸ · (layers + 1) · max |float32 output|.",
        "",
        "| framework | implementation | tok/s | / ours float32 | per round | max \\|bf16 − float32\\| "
        "| bound |",
        "|---|---|--:|--:|--:|--:|--:|",
    ]
    for framework, measured in rows:
        if "timings" not in measured:
            lines.append(f"| {FRAMEWORK_NAMES[framework]} | not run: no native bf16 on this CPU | | | | | |")
            continue
        timings = measured["timings"]
        base = timings["ours float32"]
        for name, timing in timings.items():
            agreement = (
                (f"{measured['max_abs_diff']:.2e}", f"{measured['bound']:.2e}")
                if name == "ours bfloat16"
                else ("", "")
            )
            lines.append(
                f"| {FRAMEWORK_NAMES[framework]} | {name} | {fmt(tokens / timing['median'])} "
                f"| {ratio(base['median'], timing['median'])} "
                f"| {round_range(timing['times'], base['times'])} "
                f"| {agreement[0]} | {agreement[1]} |"
            )
    return lines


def masked_lm_section(results: dict, settings: dict) -> list[str]:
    rows = list(measured_parts(results, "masked_lm"))
    if not rows:
        return ["Not measured."]
    tokens = settings["batch"] * settings["length"]
    lines = [
        f"`XLMRobertaForMaskedLM`, {settings['batch']} × {settings['length']}, about 15 % of positions "
        "labelled (the rest -100), dropout on, forward, backward and one fused AdamW step for both "
        "(ours through `xlmr_torch.training.adamw`, the reference as `transformers.Trainer` builds it "
        "by default with torch >= 2.8; `benchmarks/bench_torch.py` also times both on AdamW's plain "
        "default); ours with `labelled_positions_only=True`, the reference "
        "computing logits at every position "
        f"as it must; interleaved rounds, median of {settings['repeats']}.",
        "",
        "| framework | labelled | ours tok/s | reference tok/s | ours / reference | per round |",
        "|---|--:|--:|--:|--:|--:|",
    ]
    for framework, measured in rows:
        ours, reference = measured["timings"]["ours"], measured["timings"]["reference"]
        lines.append(
            f"| {FRAMEWORK_NAMES[framework]} | {100 * measured['labelled_fraction']:.1f} % "
            f"| {fmt(tokens / ours['median'])} | {fmt(tokens / reference['median'])} "
            f"| {ratio(reference['median'], ours['median'])} "
            f"| {round_range(ours['times'], reference['times'])} |"
        )
    return lines


def write_report(path: Path, sections: list[tuple[str, list[str]]], header: list[str]) -> None:
    text = "\n".join(header) + "\n"
    for title, lines in sections:
        text += f"\n## {title}\n\n" + "\n".join(lines) + "\n"
    temporary = path.with_suffix(".md.tmp")
    temporary.write_text(text)
    temporary.replace(path)


# ----------------------------------------------------------------------------- main


class Run:
    """What one run of every measurement gave."""

    def __init__(self, runner: Runner):
        self.runner = runner
        self.results: dict[str, list] = {}  # framework -> worker results
        self.loads: list = []  # (LOAD_CASES entry, result or None)
        self.load_note = ""
        self.tokenizers: dict | None = None
        self.tokenizer_failure: str | None = None
        self.load_at_start = os.getloadavg()[0]
        self.seconds = 0.0


def run_measurements(settings: dict, skip: set[str]) -> Run:
    """Every measurement not in `skip`, one process at a time."""
    started = time.perf_counter()
    parts = [
        ("PyTorch: ours and reference", "torch", "torch", False),
        ("TensorFlow: ours (Keras 3) and reference (Keras 2)", "tf", "tf", False),
        ("Flax: ours and reference", "flax", "flax", False),
    ]
    parts = [part for part in parts if part[1] not in skip]
    loads = [] if "load" in skip else list(LOAD_CASES)
    scratch = Path(tempfile.mkdtemp(prefix="xlmr-bench-report-"))
    run = Run(Runner(scratch, settings["threads"], len(parts) + len(loads) + ("tokenizers" not in skip)))
    try:
        for label, task, framework, legacy_keras in parts:
            result = run.runner(label, task, settings, framework, legacy_keras=legacy_keras)
            if result is not None:
                run.results.setdefault(framework, []).append(result)
        if loads:
            print("building the checkpoint for the load measurements ...", file=sys.stderr, flush=True)
            try:
                directories, run.load_note = prepare_checkpoints(scratch, settings)
            except (OSError, subprocess.CalledProcessError) as error:
                run.runner.failures.append(f"building the load checkpoint: {error}")
                loads = []
            for case in loads:
                framework, implementation, folder, source = case
                load_settings = {
                    **settings,
                    "framework": framework,
                    "implementation": implementation,
                    "directory": str(directories[folder]),
                    "source": source,
                }
                label = f"load {implementation} {FRAMEWORK_NAMES[framework]} from {source}"
                legacy_keras = framework == "tf" and implementation == "reference"
                result = run.runner(label, "load", load_settings, framework, legacy_keras=legacy_keras)
                run.loads.append((case, result))
        if "tokenizers" not in skip:
            tokenizer_settings = {**settings, **settings["tokenizers"]}
            run.tokenizers = run.runner("tokenizers", "tokenizers", tokenizer_settings, None)
            if run.tokenizers is None:
                run.tokenizer_failure = run.runner.failures[-1]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    run.seconds = time.perf_counter() - started
    return run


def compose_report(run: Run, settings: dict, machine: dict, quick: bool, plotted: bool) -> tuple[list, list]:
    """(header lines, [(section title, lines)]) of RESULTS.md."""
    config = XLMRobertaConfig.from_dict(settings["config"])
    threads = settings["threads"]
    busiest = max(run.runner.load_averages, default=0.0)
    command = "`python benchmarks/report.py" + (
        " --quick --output DIR`" if quick else "` (or `nox -s bench`)"
    )
    header = [
        "# Benchmark results" + (" (QUICK: small config, not xlm-roberta-base)" if quick else ""),
        "",
        f"Generated {datetime.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')} by "
        f"`benchmarks/report.py` in {run.seconds / 60:.1f} min; regenerate with {command}. Random weights; "
        "every number is measured in this run.",
    ]
    if run.load_at_start > 0.5 or busiest > threads + 1:
        header += [
            "",
            f"**Warning: the machine was busy** (1-minute load average {run.load_at_start:.2f} before the "
            f"first measurement, up to {busiest:.2f} during them, on {machine['usable cores']} usable "
            "cores): other processes competed for the cores, which distorts every figure here — "
            "PyTorch's OpenMP threads most, as each parallel region waits for its slowest thread. "
            "Rerun on a quiet machine.",
        ]

    thread_facts = {}
    for parts in run.results.values():
        for part in parts:
            thread_facts.update(part.get("threads", {}))
    versions = ", ".join(f"{name} {version}" for name, version in machine["versions"].items())
    machine_lines = [
        f"- CPU: {machine['cpu']}; {machine['cores']} cores, {machine['usable cores']} usable; "
        f"{machine['vector']}; {machine['memory']} RAM; {machine['platform']}, Python {machine['python']}",
        f"- Threads: {threads} per framework, each process pinned to that many cores "
        f"(`sched_setaffinity`, which also bounds XLA's thread pool); OMP_NUM_THREADS = MKL_NUM_THREADS = "
        f"TF_NUM_INTRAOP_THREADS = {threads}, TF_NUM_INTEROP_THREADS = 1; "
        + ", ".join(f"{name} = {value}" for name, value in thread_facts.items()),
        f"- 1-minute load average: {run.load_at_start:.2f} before the first measurement; at most "
        f"{busiest:.2f} at the end of a measurement (each adds about {threads} itself)",
        f"- Libraries: {versions}",
    ]
    model = "quick config" if quick else "xlm-roberta-base shape (`XLMRobertaConfig` preset)"
    workload_lines = [
        f"- Model: {model}: {describe_config(config)}; float32, CPU, random weights; inputs batch "
        f"{settings['batch']} × {settings['length']}, no padding.",
        "- Forward: the bare model (`XLMRobertaModel`, encoder + pooler), dropout off, no gradients.",
        f"- Train step: `XLMRobertaForSequenceClassification` ({config.num_labels} labels), dropout on, "
        "cross-entropy, backward, one AdamW update (lr 1e-5; no gradient clipping).",
        "- Timing: one first call of each implementation (tracing and XLA compilation, reported "
        f"separately), then {settings['repeats']} rounds in which ours and the reference each run once, "
        "who goes first swapping from round to round; the medians give the throughputs, and *per round* "
        "is the lowest and highest of the rounds' own ratios: the machine's noise on that ratio.",
        "- Ours and the reference of a framework run in the same process, alternating; each framework "
        "has a process of its own, and only one runs at a time. The reference TF port runs on Keras 2 "
        "(`tf_keras`, which `transformers` imports itself) next to our Keras 3 models.",
        *(
            f"- {FRAMEWORK_NAMES[fw]}: {FAST_PATH[fw]} — the same for ours and the reference."
            for fw in FRAMEWORKS
        ),
        "- Flax train step: one jitted step for both (value_and_grad, optax AdamW from "
        "`xlmr_flax.training`); ours takes the loss our model computes, the reference's Flax port "
        "has no loss so the step takes cross-entropy over its logits.",
        "- Ratios are of throughputs: above 1× means the first is faster.",
    ]
    sections = [
        ("Machine", machine_lines),
        ("Workload", workload_lines),
        ("Throughput (tokens/s)", throughput_section(run.results, settings, config)),
        ("Matmul peak and FLOP count", flops_section(run.results, settings, config)),
        ("Throughput against sequence length", sweep_section(sweep_series(run.results), settings, plotted)),
        ("Real-length batches: padded and unpadded", unpadded_section(run.results, settings)),
        ("Throughput against padding fraction", padding_section(run.results, settings, plotted)),
        ("bf16 on CPU", bf16_section(run.results, settings)),
        ("Masked-LM training step", masked_lm_section(run.results, settings)),
    ]
    if run.loads:
        load_intro = (
            "Each row is a fresh process: import the framework and the model class, "
            "`from_pretrained(directory)` of the bare model, one eager forward pass at "
            f"{settings['batch']} × {settings['length']}; peak RSS is that process's "
            "high-water mark (`VmHWM`; `ru_maxrss` would carry over the parent's). "
            "The reference TF is given `use_safetensors=False` to read tf_model.h5 (it prefers "
            "model.safetensors when both are there); the rows reading model.safetensors in a "
            "reference TF/Flax port convert from the PyTorch layout while loading. The reference library "
            "is told not to import the other frameworks (`USE_TF=0` etc.)."
        )
        sections.append(
            ("Load time and peak memory", [load_intro, "", *load_section(run.loads, run.load_note)])
        )
    sections.append(("Tokenizers", tokenizer_section(run.tokenizers, run.tokenizer_failure)))
    if run.runner.failures:
        sections.append(("Failures", [f"- {failure}" for failure in run.runner.failures]))
    return header, sections


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small config (hidden 128, 2 layers, length 32)")
    parser.add_argument(
        "--output",
        type=Path,
        help="folder for RESULTS.md and the plot (default: benchmarks/; with --quick a new temporary one)",
    )
    parser.add_argument("--threads", type=int, help="threads (and cores) per framework (default: all usable)")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per measurement (median)")
    parser.add_argument("--sweep-repeats", type=int, default=2, help="timed calls per sequence-length point")
    parser.add_argument("--no-plot", action="store_true", help="write RESULTS.md without the plot")
    parser.add_argument("--skip", default="", help=f"comma-separated parts to leave out: {', '.join(PARTS)}")
    args = parser.parse_args()

    if not args.no_plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print(f"error: {MATPLOTLIB_MISSING}", file=sys.stderr)
            return 2
    skip = {part for part in args.skip.split(",") if part}
    if skip - set(PARTS):
        parser.error(
            f"unknown part(s) to skip: {', '.join(sorted(skip - set(PARTS)))}; known: {', '.join(PARTS)}"
        )
    output = args.output or (Path(tempfile.mkdtemp(prefix="xlmr-bench-quick-")) if args.quick else BENCHMARKS)
    output.mkdir(parents=True, exist_ok=True)

    settings = make_settings(args)
    machine = machine_facts()
    run = run_measurements(settings, skip)

    series = sweep_series(run.results)
    plotted = not args.no_plot and bool(series)
    if plotted:
        title = (
            "XLM-R forward throughput against sequence length, fp32, "
            f"~{settings['sweep_tokens']} tokens/batch\n"
            f"{describe_config(XLMRobertaConfig.from_dict(settings['config']))}\n"
            f"{machine['cpu']}, {settings['threads']} threads ({machine['usable cores']} usable cores), "
            f"{datetime.date.today().isoformat()}"
        )
        draw_plot(series, output / PLOT_NAME, title)
        padding = padding_series(run.results)
        if padding:
            draw_padding_plot(
                padding,
                output / PADDING_PLOT_NAME,
                title.replace("against sequence length", "against padding fraction (real tokens)").replace(
                    f"~{settings['sweep_tokens']} tokens/batch", "one 8 x 256 batch per point"
                ),
            )
    header, sections = compose_report(run, settings, machine, args.quick, plotted)
    write_report(output / "RESULTS.md", sections, header)
    wrote = f"wrote {output / 'RESULTS.md'}" + (f" and the plots in {output}" if plotted else "")
    print(wrote, file=sys.stderr)
    return 1 if run.runner.failures else 0


if __name__ == "__main__":
    raise SystemExit(main())

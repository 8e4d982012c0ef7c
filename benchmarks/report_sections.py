"""The parts of benchmarks/report.py that stand-alone bench scripts measure, and their sections.

Each part runs one script in a process of its own, with `--json FILE`; that file is the
part's result, and a renderer here turns it into RESULTS.md lines:

  encode        benchmarks/bench_encode.py   `encode` of a corpus, first and second call
  bf16          benchmarks/bench_bf16.py     float32 against bf16 per framework, the CPU's flags
  long          benchmarks/bench_long.py     one sequence of up to 8,192 tokens, tok/s and peak RSS
  load-median   benchmarks/bench_load.py     median `from_pretrained` seconds, mmap off and on

`--quick` gives each script tiny sizes (one layer, a few dozen texts, 1,280 tokens, a
quick-config checkpoint) so that the whole report stays a few minutes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

FRAMEWORKS = ("torch", "tf", "flax")
FRAMEWORK_NAMES = {"torch": "PyTorch", "tf": "TensorFlow", "flax": "Flax"}
ENCODE_TARGET = 1.5  # issue 25: TF and Flax `encode` within 1.5x torch's time, first call counted
BF16_TARGET = 1.5  # issue 25: bf16 at least 1.5x float32 (torch and Flax) on a CPU that has it
TF_LOAD_TARGET_S = 1.5  # issue 25: TF loads a base checkpoint in 1.5 s


@dataclass(frozen=True)
class ScriptPart:
    """One script the report runs: its `--skip` name, file, section title, arguments and renderer."""

    name: str
    script: str
    title: str
    arguments: Callable[[dict, bool, Path], list[str]]  # (settings, quick, scratch) -> argv
    render: Callable[[dict, bool], list[str]]  # (the script's JSON, quick) -> lines
    timeout_s: int


# ----------------------------------------------------------------------------- helpers


def _seconds(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def _span(bounds: list | None, suffix: str = "×") -> str:
    """`[low, high]` as 'low–high×'."""
    if not bounds:
        return "—"
    low, high = bounds
    return f"{low:.2f}–{high:.2f}{suffix}"


# ----------------------------------------------------------------------------- encode


def encode_arguments(settings: dict, quick: bool, scratch: Path) -> list[str]:
    sizes = ("48", "1", "16") if quick else ("2000", "2", "32")
    texts, layers, batch = sizes
    return ["--texts", texts, "--layers", layers, "--batch-size", batch, "--rounds", "2"] + [
        "--threads",
        str(settings["threads"]),
    ]


def encode_section(result: dict, quick: bool) -> list[str]:
    reference = result.get("reference", "torch")
    lines = [
        f"`model.encode(texts, tokenizer)` of {result['texts']:,} short multilingual texts "
        f"({result['tokens']:,} tokens; one to three `heldout.tsv` sentences each), base width (hidden "
        f"768, 12 heads), {result['layers']} layer(s), vocabulary 4,002, batch {result['batch_size']}, "
        f"{result['threads'] or 'default'} thread(s) (`benchmarks/bench_encode.py`). Per framework a "
        "freshly loaded model calls `encode` twice: the first call pays tracing and compilation (what a "
        "user pays), the second reuses the compiled programs. Seconds are the best of "
        f"{result['rounds']} rounds, the frameworks' order rotating; the time ratios to "
        f"{FRAMEWORK_NAMES.get(reference, reference)} are given as their range over the rounds "
        "(above 1× is slower).",
        "",
        f"| framework | first call s | second call s | texts/s (second call) | first call / "
        f"{FRAMEWORK_NAMES.get(reference, reference)}, per round | second call / "
        f"{FRAMEWORK_NAMES.get(reference, reference)}, per round | programs compiled "
        "| max \\|embedding − PyTorch's\\| |",
        "|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for framework in FRAMEWORKS:
        row = result.get(framework)
        if row is None:
            continue
        own = framework == reference
        programs = "none (eager)" if row["programs"] is None else str(row["programs"])
        lines.append(
            f"| {FRAMEWORK_NAMES[framework]} | {_seconds(row['cold_s'])} | {_seconds(row['warm_s'])} "
            f"| {row['texts_per_s']:,.0f} | {'—' if own else _span(row['cold_ratio_range'])} "
            f"| {'—' if own else _span(row.get('warm_ratio_range'))} | {programs} "
            f"| {'—' if own else format(row['max_abs_diff_vs_reference'], '.1e')} |"
        )
    lines += ["", f"Issue 25's target: TensorFlow and Flax first call within {ENCODE_TARGET}× of PyTorch's."]
    return lines


# ----------------------------------------------------------------------------- bf16


def bf16_arguments(settings: dict, quick: bool, scratch: Path) -> list[str]:
    sizes = ("1", "2", "32", "2") if quick else ("4", "8", "128", "3")
    layers, batch, length, rounds = sizes
    return ["--layers", layers, "--batch", batch, "--length", length, "--rounds", rounds] + [
        "--threads",
        str(settings["threads"]),
    ]


def bf16_bound(layers: int, largest: float) -> float:
    """The README's bf16 agreement bound (written once, in benchmarks/_workers.py)."""
    from _workers import bf16_bound as bound

    return bound(layers, largest)


def bf16_script_section(result: dict, quick: bool) -> list[str]:
    flags = result.get("cpu_flags", [])
    native = "avx512_bf16" in flags or "amx_bf16" in flags
    lines = [
        f"CPU flags (/proc/cpuinfo): {', '.join(f'`{flag}`' for flag in flags) or 'none looked for'}; "
        f"native bf16 (`avx512_bf16` or `amx_bf16`): **{'yes' if native else 'no'}**.",
        "",
    ]
    if "skipped" in result:
        return lines + [
            "**bf16 rows skipped: this CPU has neither `avx512_bf16` nor `amx_bf16`**, so its bf16 "
            "products are emulated and far slower than float32; the speed-up figures are for a machine "
            "that has them."
        ]
    lines += [
        f"Forward of the bare model, base width (hidden 768, 12 heads), {result['layers']} layer(s), "
        f"batch {result['batch']} × {result['length']}, {result.get('threads') or 'default'} thread(s) "
        "(`benchmarks/bench_bf16.py`). PyTorch: weights loaded as bf16 (`dtype=torch.bfloat16`) and "
        "float32 weights under `torch.autocast`; Flax: `dtype=jnp.bfloat16` (bf16 compute, float32 "
        "parameters), jitted; TensorFlow: the Keras `mixed_bfloat16` policy in a `tf.function`. "
        f"Each framework's variants alternate in {result.get('rounds', '?')} rounds (best of 3 calls "
        "per round); the speed-up is float32's time over the variant's, as its range over the rounds. "
        "The bound is the README's: 8 · 2⁻⁸ · (layers + 1) · max |float32 output|.",
        "",
        "| framework | variant | ms (best) | speed-up over float32, per round | max \\|variant − float32\\| "
        "| bound |",
        "|---|---|--:|--:|--:|--:|",
    ]
    for framework in FRAMEWORKS:
        measured = result.get(framework)
        if measured is None:
            continue
        bound = bf16_bound(result["layers"], measured["max_abs_float32"])
        for variant, row in measured["rows"].items():
            plain = variant == "float32"
            difference = "" if plain else f"{row['max_abs_diff']:.2e}"
            exceeded = not plain and row["max_abs_diff"] > bound
            within = "" if plain else f"{bound:.2e}" + (" **exceeded**" if exceeded else "")
            lines.append(
                f"| {FRAMEWORK_NAMES[framework]} | {variant} | {1000 * row['best_s']:,.1f} "
                f"| {'—' if plain else _span(row['speedup_range'])} | {difference} | {within} |"
            )
    hlo = result.get("flax", {}).get("hlo", {}).get("bf16 compute")
    if hlo:
        lines += [
            "",
            f"Flax's compiled bf16 program: {hlo['bf16 dots']} of its {hlo['dots']} dots in bf16, "
            f"{hlo['converts']} converts (XLA CPU keeps a dot in bf16 only where it has a bf16 kernel).",
        ]
    lines += [
        "",
        f"Issue 25's target: bf16 ≥ {BF16_TARGET}× float32 for PyTorch and Flax on a CPU that has it.",
    ]
    return lines


# ----------------------------------------------------------------------------- long inputs


def long_arguments(settings: dict, quick: bool, scratch: Path) -> list[str]:
    cap = ["--memory-limit-gb", str(memory_cap_gib())]
    if quick:
        # One length over the chunked-attention threshold, beside the reference, relative
        # positions only (the path with more to get wrong): six fresh processes.
        sizes = "--layers 1 --repeats 1 --lengths 1280 --reference-up-to 1280"
        return [*sizes.split(), *cap, "--positions", "relative_key", "--time-limit", "300"]
    sizes = "--layers 2 --repeats 2 --lengths 512 2048 8192 --reference-up-to 2048"
    return [*sizes.split(), *cap, "--positions", "absolute", "relative_key", "--time-limit", "900"]


def memory_cap_gib() -> int:
    """60 % of the machine's memory (0: no cap, where /proc/meminfo cannot be read): a row past it
    fails as out of memory instead of pushing the machine into swap or the OOM killer."""
    try:
        total_kib = int(Path("/proc/meminfo").read_text().split()[1])  # "MemTotal: N kB" comes first
    except (OSError, IndexError, ValueError):
        return 0
    return int(0.6 * total_kib / 2**20)


def _long_cell(row: dict | None) -> tuple[str, str, str]:
    """(tok/s, peak RSS MB, first call s) of one row, or what stopped it."""
    if row is None:
        return "not run", "—", "—"
    if "skipped" in row:
        return f"not run ({row['skipped']})", "—", "—"
    if "error" in row:
        error = row["error"]
        if error.startswith(("out of memory", "too slow")):
            return f"**{error}**", "—", "—"
        return f"failed: `{error[:120]}`", "—", "—"
    rate = f"{row['tokens_per_s']:,.0f}" + ("" if row.get("finite", True) else " (**non-finite output**)")
    return rate, f"{row['peak_rss_mb']:,.0f}", f"{row['first_s']:.1f}"


def long_section(result: dict, quick: bool) -> list[str]:
    from xlmr_core.unpadding import LONG_INPUT_THRESHOLD

    rows = {(r["positions"], r["length"], r["framework"], r["implementation"]): r for r in result["rows"]}
    cap = result.get("memory_limit_gb") or 0
    lines = [
        "The forward of one sequence (batch 1, no padding), base width (hidden 768, 12 heads, vocabulary "
        f"250,002), {result['layers']} layer(s), "
        f"`max_position_embeddings={result['max_position_embeddings']}`, "
        "float32, random weights (`benchmarks/bench_long.py`). Every row is a fresh process, so its peak "
        "RSS (high-water mark) is its own: build the model, a first call (tracing and compilation), "
        f"then the median of {result['repeats']} call(s). Ours switches to chunked-query attention above "
        f"{LONG_INPUT_THRESHOLD:,} tokens; the reference materialises `[heads, L, L]` scores in every "
        f"layer and runs only up to {result['reference_up_to']:,} tokens. A row over "
        f"{result['time_limit_s']:.0f} s is stopped and shown as too slow"
        + (f"; each row's address space is capped at {cap:g} GiB (out of memory past it)." if cap else "."),
        "",
        "| position embedding | tokens | framework | ours tok/s | reference tok/s | ours / reference "
        "| ours peak RSS MB | reference peak RSS MB | first call s (ours / ref.) |",
        "|---|--:|---|--:|--:|--:|--:|--:|--:|",
    ]
    positions = list(dict.fromkeys(key[0] for key in rows))
    lengths = sorted({key[1] for key in rows})
    for position in positions:
        for length in lengths:
            for framework in FRAMEWORKS:
                ours = rows.get((position, length, framework, "ours"))
                reference = rows.get((position, length, framework, "reference"))
                if ours is None and reference is None:
                    continue
                (ours_rate, ours_rss, ours_first), (ref_rate, ref_rss, ref_first) = map(
                    _long_cell, (ours, reference)
                )
                speed = "—"
                if ours and reference and "tokens_per_s" in ours and "tokens_per_s" in reference:
                    speed = f"{ours['tokens_per_s'] / reference['tokens_per_s']:.2f}×"
                lines.append(
                    f"| {position} | {length:,} | {FRAMEWORK_NAMES[framework]} | {ours_rate} | {ref_rate} "
                    f"| {speed} | {ours_rss} | {ref_rss} | {ours_first} / {ref_first} |"
                )
    return lines


# ----------------------------------------------------------------------------- load


def load_arguments(settings: dict, quick: bool, scratch: Path) -> list[str]:
    if not quick:
        return ["--runs", "5"]  # the script writes its base-size checkpoint itself
    from bench_convert import build_checkpoint

    config = settings["config"]
    shape = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")
    directory = scratch / "load-median-checkpoint"
    build_checkpoint(directory, "xlm-roberta-base", head="Model", **{key: config[key] for key in shape})
    return ["--runs", "1", "--checkpoint", str(directory)]


def load_median_section(result: dict, quick: bool) -> list[str]:
    checkpoint = (
        "the quick config's checkpoint (not base size: the 1.5 s target does not apply)"
        if quick
        else "a random `xlm-roberta-base`-shaped bare model (about 1.1 GB of float32 in model.safetensors)"
    )
    lines = [
        f"`from_pretrained` of {checkpoint}, in {result['runs']} fresh process(es) per row, mmap off "
        "and on, the rows interleaved, the page cache warm (`benchmarks/bench_load.py`); importing the "
        "framework is timed apart and not counted. Load seconds are wall-clock, median with the range "
        "over the runs; CPU seconds are the loading process's (steadier on a shared machine).",
        "",
        "| framework | mmap | load s (median) | range | CPU s | import s |",
        "|---|---|--:|--:|--:|--:|",
    ]
    results = result["results"]
    for framework in FRAMEWORKS:
        for mmap in (False, True):
            row = results.get(framework + ("_mmap" if mmap else ""))
            if row is None:
                continue
            lines.append(
                f"| {FRAMEWORK_NAMES[framework]} | {'on' if mmap else 'off'} | {row['load']:.2f} "
                f"| {row['min']:.2f}–{row['max']:.2f} | {row['cpu']:.2f} | {row['import']:.2f} |"
            )
    if "tf" in results and not quick:
        seconds = results["tf"]["load"]
        verdict = "within" if seconds <= TF_LOAD_TARGET_S else "over"
        lines += [
            "",
            f"Issue 25's target: TensorFlow loads in ≤ {TF_LOAD_TARGET_S} s: {seconds:.2f} s, {verdict}.",
        ]
    return lines


# ----------------------------------------------------------------------------- the parts

HOUR = 3600
SCRIPT_PARTS = (
    ScriptPart("encode", "bench_encode.py", "`encode` of a corpus", encode_arguments, encode_section, HOUR),
    ScriptPart(
        "bf16",
        "bench_bf16.py",
        "bf16 against float32 per framework",
        bf16_arguments,
        bf16_script_section,
        HOUR,
    ),
    ScriptPart(
        "long", "bench_long.py", "Long inputs, up to 8,192 tokens", long_arguments, long_section, 3 * HOUR
    ),
    ScriptPart(
        "load-median",
        "bench_load.py",
        "Load time, median of fresh processes, mmap off and on",
        load_arguments,
        load_median_section,
        HOUR,
    ),
)
PART_NAMES = tuple(part.name for part in SCRIPT_PARTS)


def part_section(
    part: ScriptPart, result: dict | None, skipped: bool, present: bool, quick: bool
) -> list[str]:
    """The part's section lines, or why it has none."""
    if skipped:
        return [f"Skipped (`--skip {part.name}`)."]
    if not present:
        return [f"Not measured: `benchmarks/{part.script}` is not in this tree."]
    if result is None:
        return ["Not measured: the script failed (see Failures)."]
    return part.render(result, quick)

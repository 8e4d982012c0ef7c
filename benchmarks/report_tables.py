"""The RESULTS.md tables and plots that benchmarks/report.py draws from its workers' results
(benchmarks/_workers.py): throughput, matmul peak, load, tokenizers, the sequence-length and
padding sweeps, real-length batches, bf16 and the masked-LM step."""

from __future__ import annotations

import statistics
from pathlib import Path

from _flops import FORMULA, forward_flops, train_step_flops
from report_sections import FRAMEWORK_NAMES, FRAMEWORKS

from xlmr_core import XLMRobertaConfig

PLOT_NAME = "throughput_vs_length.png"
PADDING_PLOT_NAME = "throughput_vs_padding.png"


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
        *series_table(series, lengths, str),
    ]
    return lines


def series_table(series: dict, columns: list, heading) -> list[str]:
    """A markdown table: a row per series label, a column per x value (`heading(x)`; — where missing)."""
    lines = [
        "| implementation | " + " | ".join(heading(x) for x in columns) + " |",
        "|---|" + "--:|" * len(columns),
    ]
    for label, points in series.items():
        lines.append(f"| {label} | " + " | ".join(fmt(points.get(x)) for x in columns) + " |")
    return lines


# Line colour per framework, and (marker, line style) per implementation, in both plots.
PLOT_COLORS = {"PyTorch": "tab:red", "TensorFlow": "tab:orange", "Flax": "tab:blue"}
PLOT_STYLES = {"ours": ("o", "-"), "reference": ("s", "--")}
PADDING_PLOT_STYLES = {"reference": ("s", ":"), "ours padded": ("^", "--"), "ours unpadded": ("o", "-")}


def plot_series(
    series: dict, path: Path, title: str, styles: dict, xlabel: str, ylabel: str, log_x=False
) -> None:
    """One line per `"<implementation> <framework>"` label of `series` ({x: y}), saved as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 5))
    for label, points in series.items():
        implementation, framework = label.rsplit(" ", 1)
        xs = sorted(points)
        marker, linestyle = styles[implementation]
        axes.plot(
            xs,
            [points[x] for x in xs],
            marker=marker,
            linestyle=linestyle,
            color=PLOT_COLORS[framework],
            label=f"{framework}: {implementation}"
            + (" (transformers)" if implementation == "reference" else ""),
        )
    if log_x:
        axes.set_xscale("log", base=2)
        axes.set_xticks(sorted({x for points in series.values() for x in points}))
        axes.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.set_ylim(bottom=0)
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=8)
    axes.set_title(title, fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def draw_plot(series: dict, path: Path, title: str) -> None:
    """Forward tokens/s against sequence length (log scale), ours and the reference per framework."""
    plot_series(
        series,
        path,
        title,
        PLOT_STYLES,
        "sequence length (tokens)",
        "forward throughput (tokens/s)",
        log_x=True,
    )


def measured_parts(results: dict, key: str):
    """(framework, the worker's `key` entry) for every framework whose worker measured it."""
    for framework in FRAMEWORKS:
        for part in results.get(framework, []):
            if key in part:
                yield framework, part[key]


def median_ratio(ratios: list) -> str:
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
        "(compilation: XLA per token and pair budget, `xlmr_core.unpadding.static_budgets`, for ours "
        "unpadded in TF and Flax).",
        "",
        *work_lines(rows[0][1].get("work")),
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


def work_lines(work: dict | None) -> list[str]:
    """What removing the padding can buy here: the reference's matrix-product FLOPs over ours."""
    if not work:
        return []
    return [
        f"The reference's matrix products cost {work['reference_gflop']:,.0f} GFLOP on these batches; "
        f"over ours unpadded that is **{work['ceiling_torch']:.2f}×** in PyTorch (exact token count, "
        f"Σ L_i² per sequence) and **{work['ceiling_blocked']:.2f}×** in TF and Flax (the token budget's "
        "rows, 64-token block pairs): the speed-up at equal FLOP rates (`bench_unpadded.work`). Above "
        "it, an implementation runs its matrix products faster than the reference does.",
        "",
    ]


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
        *series_table(series, fractions, "{:.2f}".format),
    ]
    return lines


def draw_padding_plot(series: dict, path: Path, title: str) -> None:
    """Real tokens/s against the padding fraction: the reference, ours padded and unpadded."""
    plot_series(
        series,
        path,
        title,
        PADDING_PLOT_STYLES,
        "padding fraction of the batch",
        "forward throughput (real tokens/s)",
    )


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

"""Run every benchmark and write benchmarks/RESULTS.md with a throughput-vs-length plot.

For each framework (PyTorch, TensorFlow, Flax), ours and the reference implementation of the
same framework (transformers 4.57.6) side by side at xlm-roberta-base size, batch 8 x 128,
float32, CPU: forward and one training-step throughput, the ratio ours/reference and the ratio
to the reference PyTorch, the fraction of the machine's measured matmul peak, load time and peak
memory of `from_pretrained`, tokenizer throughput, forward throughput at sequence lengths
64 to 512 (benchmarks/throughput_vs_length.png), real-length batches padded and unpadded
(benchmarks/bench_unpadded.py) with throughput against the padding fraction
(benchmarks/throughput_vs_padding.png), bf16 on CPU and the masked-LM training step; and the
stand-alone scripts' parts (benchmarks/report_sections.py): `encode` of a corpus, bf16 against
float32 per framework with the CPU's flags, inputs of 512 to 8,192 tokens, and the median load
time with mmap off and on.

    python benchmarks/report.py                    # the real run: ~30 min on 2 cores, and the
                                                   # scripts' parts about as long again (estimated)
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
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent
REPO = BENCHMARKS.parent
sys.path[:0] = [str(REPO), str(BENCHMARKS)]

from report_sections import FRAMEWORK_NAMES, FRAMEWORKS, PART_NAMES, SCRIPT_PARTS, part_section  # noqa: E402
from report_tables import (  # noqa: E402
    PADDING_PLOT_NAME,
    PLOT_NAME,
    bf16_section,
    describe_config,
    draw_padding_plot,
    draw_plot,
    flops_section,
    load_section,
    masked_lm_section,
    padding_section,
    padding_series,
    sweep_section,
    sweep_series,
    throughput_section,
    tokenizer_section,
    unpadded_section,
)

from xlmr_core import XLMRobertaConfig  # noqa: E402

TASK_TIMEOUT_S = 3600  # one measurement process; the longest (Flax, base size) takes ~10 min on 2 cores
MATPLOTLIB_MISSING = (
    "the plot needs matplotlib: pip install 'xlmr[bench]' (the bench extra), or pass --no-plot "
    "to write RESULTS.md without it"
)
PARTS = ("torch", "tf", "flax", "load", "tokenizers", *PART_NAMES)
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
    env.update(OTHER_FRAMEWORKS_OFF.get(framework, {}))  # "all": a script comparing every framework
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
        command = [
            sys.executable,
            str(BENCHMARKS / "_workers.py"),
            task,
            str(settings_path),
            str(result_path),
        ]
        result = self._run(label, command, worker_env(self.threads, framework, legacy_keras), result_path)
        if result is not None:
            self.load_averages.append(result["loadavg"][0])
        return result

    def script(self, label: str, script: str, arguments: list[str], timeout_s: int) -> dict | None:
        """`benchmarks/SCRIPT ARGUMENTS --json RESULT` on the first `threads` cores; its JSON."""
        self.done += 1
        result_path = self.scratch / f"result-{self.done}.json"
        command = [sys.executable, str(BENCHMARKS / script), *arguments, "--json", str(result_path)]
        cores = sorted(os.sched_getaffinity(0))[: self.threads]
        result = self._run(
            label,
            command,
            worker_env(self.threads, "all", False),
            result_path,
            timeout_s,
            pin=lambda: os.sched_setaffinity(0, cores),  # inherited by the script's own processes
        )
        if result is not None:
            self.load_averages.append(os.getloadavg()[0])
        return result

    def _run(self, label, command, env, result_path, timeout_s=TASK_TIMEOUT_S, pin=None) -> dict | None:
        print(f"[{self.done:2d}/{self.total}] {label} ...", end="", file=sys.stderr, flush=True)
        start = time.perf_counter()
        # A session of its own, so that a stopped task's own children (a script's fresh-process
        # rows) stop with it instead of competing with the next measurement for the cores.
        with subprocess.Popen(
            command,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
            preexec_fn=pin,
            start_new_session=True,
        ) as process:
            try:
                _, stderr = process.communicate(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.communicate()
                self.failures.append(f"{label}: still running after {timeout_s} s, stopped")
                print(" TIMED OUT", file=sys.stderr, flush=True)
                return None
        done = subprocess.CompletedProcess(command, process.returncode, stderr=stderr)
        elapsed = time.perf_counter() - start
        if done.returncode != 0 or not result_path.is_file():
            lines = [line for line in done.stderr.strip().splitlines() if line.strip()] or ["(no output)"]
            self.failures.append(f"{label}: exit status {done.returncode}: {lines[-1]}")
            print(f" FAILED after {elapsed:.0f} s; its last lines:", file=sys.stderr)
            print("\n".join("    " + line for line in lines[-15:]), file=sys.stderr, flush=True)
            return None
        print(f" {elapsed:.0f} s", file=sys.stderr, flush=True)
        return json.loads(result_path.read_text())


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
    wanted = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
    vector = [flag for flag in wanted if flag in flags]
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
        self.scripts: dict[str, dict | None] = {}  # report_sections part name -> its script's JSON
        self.skipped: set[str] = set()
        self.load_at_start = os.getloadavg()[0]
        self.seconds = 0.0


def run_measurements(settings: dict, skip: set[str], quick: bool = False) -> Run:
    """Every measurement not in `skip`, one process at a time."""
    started = time.perf_counter()
    parts = [
        ("PyTorch: ours and reference", "torch", "torch", False),
        ("TensorFlow: ours (Keras 3) and reference (Keras 2)", "tf", "tf", False),
        ("Flax: ours and reference", "flax", "flax", False),
    ]
    parts = [part for part in parts if part[1] not in skip]
    loads = [] if "load" in skip else list(LOAD_CASES)
    scripts = [
        part for part in SCRIPT_PARTS if part.name not in skip and (BENCHMARKS / part.script).is_file()
    ]
    scratch = Path(tempfile.mkdtemp(prefix="xlmr-bench-report-"))
    total = len(parts) + len(loads) + ("tokenizers" not in skip) + len(scripts)
    run = Run(Runner(scratch, settings["threads"], total))
    run.skipped = skip
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
        for part in scripts:
            try:
                arguments = part.arguments(settings, quick, scratch)
            except (OSError, subprocess.CalledProcessError) as error:
                run.runner.failures.append(f"preparing {part.script}: {error}")
                continue
            label = f"{part.name} (benchmarks/{part.script})"
            run.scripts[part.name] = run.runner.script(label, part.script, arguments, part.timeout_s)
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
    extra = {
        part.name: (
            part.title,
            part_section(
                part,
                run.scripts.get(part.name),
                skipped=part.name in run.skipped,
                present=(BENCHMARKS / part.script).is_file(),
                quick=quick,
            ),
        )
        for part in SCRIPT_PARTS
    }
    sections = [
        ("Machine", machine_lines),
        ("Workload", workload_lines),
        ("Throughput (tokens/s)", throughput_section(run.results, settings, config)),
        ("Matmul peak and FLOP count", flops_section(run.results, settings, config)),
        ("Throughput against sequence length", sweep_section(sweep_series(run.results), settings, plotted)),
        ("Real-length batches: padded and unpadded", unpadded_section(run.results, settings)),
        ("Throughput against padding fraction", padding_section(run.results, settings, plotted)),
        extra["long"],
        ("bf16 on CPU", bf16_section(run.results, settings)),
        extra["bf16"],
        ("Masked-LM training step", masked_lm_section(run.results, settings)),
        extra["encode"],
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
    sections.append(extra["load-median"])
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
    run = run_measurements(settings, skip, quick=args.quick)

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

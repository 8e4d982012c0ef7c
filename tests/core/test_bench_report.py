"""benchmarks/report.py's parts measured by the stand-alone scripts (benchmarks/report_sections.py):
their sections rendered from JSON in the scripts' shape, and `--skip` knowing their names."""

from __future__ import annotations

import importlib.util
import os
import sys
import time
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "report.py"
_spec = importlib.util.spec_from_file_location("bench_report_under_test", _PATH)
report = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(report)  # puts benchmarks/ on sys.path
import report_sections as sections  # noqa: E402


def _row(lines: list[str], *starts: str) -> str:
    """The one table row beginning with `| start | ...`."""
    prefix = "| " + " | ".join(starts) + " |"
    (found,) = [line for line in lines if line.startswith(prefix)]
    return found


def test_encode_section_gives_times_ratio_ranges_and_programs():
    texts = 48
    result = {
        "cpu_flags": ["avx2"],
        "texts": texts,
        "tokens": 900,
        "layers": 1,
        "batch_size": 16,
        "rounds": 2,
        "threads": 2,
        "reference": "torch",
        "torch": {
            "cold_s": 0.5,
            "warm_s": 0.4,
            "texts_per_s": texts / 0.4,
            "cold_ratio_range": [1.0, 1.0],
            "warm_ratio_range": [1.0, 1.0],
            "programs": None,
            "max_abs_diff_vs_reference": 0.0,
        },
        "flax": {
            "cold_s": 3.0,
            "warm_s": 0.3,
            "texts_per_s": texts / 0.3,
            "cold_ratio_range": [5.5, 6.25],
            "warm_ratio_range": [0.7, 0.8],
            "programs": 3,
            "max_abs_diff_vs_reference": 2e-6,
        },
    }
    lines = sections.encode_section(result, quick=True)
    # texts/s of the second call: 48 / 0.4 = 120 and 48 / 0.3 = 160
    assert _row(lines, "PyTorch") == "| PyTorch | 0.50 | 0.40 | 120 | — | — | none (eager) | — |"
    assert _row(lines, "Flax") == "| Flax | 3.00 | 0.30 | 160 | 5.50–6.25× | 0.70–0.80× | 3 | 2.0e-06 |"
    assert not any(line.startswith("| TensorFlow") for line in lines)  # not measured: no row


def test_bf16_section_says_so_and_skips_where_the_cpu_lacks_bf16():
    lines = sections.bf16_script_section(
        {"cpu_flags": ["avx2", "avx512f"], "skipped": "no bf16"}, quick=False
    )
    text = "\n".join(lines)
    assert "`avx2`, `avx512f`" in text and "native bf16 (`avx512_bf16` or `amx_bf16`): **no**" in text
    assert "bf16 rows skipped" in text and "| framework |" not in text


def test_bf16_section_gives_speedup_ranges_and_checks_the_readme_bound():
    def rows(diff):
        return {
            "float32": {"best_s": 0.010, "speedup_range": [1.0, 1.0], "max_abs_diff": 0.0},
            "bf16 compute": {"best_s": 0.004, "speedup_range": [2.25, 2.5], "max_abs_diff": diff},
        }

    result = {"cpu_flags": ["avx512_bf16"], "layers": 1, "batch": 2, "length": 32, "rounds": 2, "threads": 2}
    # bound = 8 · 2⁻⁸ · (1 + 1) · 4.0 = 0.25
    result["torch"] = {"rows": rows(0.1), "hlo": {}, "max_abs_float32": 4.0}
    result["flax"] = {
        "rows": rows(0.3),
        "hlo": {"bf16 compute": {"bf16 dots": 5, "dots": 7, "converts": 11}},
        "max_abs_float32": 4.0,
    }
    lines = sections.bf16_script_section(result, quick=True)
    assert _row(lines, "PyTorch", "float32") == "| PyTorch | float32 | 10.0 | — |  |  |"
    assert (
        _row(lines, "PyTorch", "bf16 compute")
        == "| PyTorch | bf16 compute | 4.0 | 2.25–2.50× | 1.00e-01 | 2.50e-01 |"
    )
    assert _row(lines, "Flax", "bf16 compute").endswith("| 3.00e-01 | 2.50e-01 **exceeded** |")
    assert "5 of its 7 dots in bf16, 11 converts" in "\n".join(lines)
    assert "native bf16 (`avx512_bf16` or `amx_bf16`): **yes**" in lines[0]


def test_long_section_puts_ours_beside_the_reference_and_names_what_stopped_a_row():
    def measured(implementation, length, rate, rss):
        return {
            "framework": "torch",
            "implementation": implementation,
            "length": length,
            "positions": "relative_key",
            "first_s": 1.5,
            "seconds": length / rate,
            "tokens_per_s": rate,
            "peak_rss_mb": rss,
            "finite": True,
        }

    result = {
        "layers": 1,
        "repeats": 1,
        "max_position_embeddings": 8194,
        "reference_up_to": 512,
        "memory_limit_gb": 8,
        "time_limit_s": 300,
        "rows": [
            measured("reference", 512, 1000.0, 2000.0),
            measured("ours", 512, 2500.0, 1500.0),
            {
                "framework": "torch",
                "implementation": "reference",
                "length": 8192,
                "positions": "relative_key",
                "skipped": "over --reference-up-to 512",
            },
            {
                "framework": "torch",
                "implementation": "ours",
                "length": 8192,
                "positions": "relative_key",
                "error": "out of memory under the 8 GiB cap",
            },
            {
                "framework": "flax",
                "implementation": "ours",
                "length": 8192,
                "positions": "relative_key",
                "error": "too slow: over the 300 s limit",
            },
        ],
    }
    lines = sections.long_section(result, quick=True)
    assert _row(lines, "relative_key", "512", "PyTorch") == (
        "| relative_key | 512 | PyTorch | 2,500 | 1,000 | 2.50× | 1,500 | 2,000 | 1.5 / 1.5 |"
    )
    assert _row(lines, "relative_key", "8,192", "PyTorch") == (
        "| relative_key | 8,192 | PyTorch | **out of memory under the 8 GiB cap** "
        "| not run (over --reference-up-to 512) | — | — | — | — / — |"
    )
    assert "**too slow: over the 300 s limit**" in _row(lines, "relative_key", "8,192", "Flax")
    assert "capped at 8 GiB" in lines[0]


def test_load_median_section_gives_both_modes_and_the_tf_verdict():
    def row(load):
        return {"load": load, "min": load - 0.1, "max": load + 0.2, "cpu": 0.9, "import": 3.0}

    result = {"runs": 5, "results": {"tf": row(1.4), "tf_mmap": row(0.6), "torch": row(0.3)}}
    lines = sections.load_median_section(result, quick=False)
    assert _row(lines, "TensorFlow", "off") == "| TensorFlow | off | 1.40 | 1.30–1.60 | 0.90 | 3.00 |"
    assert _row(lines, "TensorFlow", "on") == "| TensorFlow | on | 0.60 | 0.50–0.80 | 0.90 | 3.00 |"
    assert lines[-1].endswith("1.40 s, within.")
    # the quick run's checkpoint is not base size: no verdict against the base-size target
    assert "Issue 25's target" not in "\n".join(sections.load_median_section(result, quick=True))


def test_skip_names_the_new_parts_and_refuses_unknown_ones(tmp_path, monkeypatch, capsys):
    everything = ",".join(report.PARTS)
    assert {"encode", "bf16", "long", "load-median"} <= set(report.PARTS)
    monkeypatch.setattr(sys, "argv", ["report.py", "--quick", "--no-plot", "--skip", "long,bogus"])
    with pytest.raises(SystemExit):
        report.main()
    assert "unknown part(s) to skip: bogus; known: " in capsys.readouterr().err

    # Every part skipped: nothing runs, and each new section says it was skipped.
    arguments = ["report.py", "--quick", "--no-plot", "--skip", everything, "--output", str(tmp_path)]
    monkeypatch.setattr(sys, "argv", arguments)
    assert report.main() == 0
    text = (tmp_path / "RESULTS.md").read_text()
    for part in sections.SCRIPT_PARTS:
        assert f"## {part.title}\n\nSkipped (`--skip {part.name}`)." in text


def test_a_stopped_task_takes_its_own_child_processes_with_it(tmp_path):
    # The task starts a child (as bench_long.py starts a process per row) and outlives the limit.
    pid_file = tmp_path / "child.pid"
    task = (
        "import subprocess, sys, time; "
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
        f"open({str(pid_file)!r}, 'w').write(str(child.pid)); time.sleep(60)"
    )
    runner = report.Runner(tmp_path, threads=1, total=1)
    runner.done = 1
    started = time.perf_counter()
    result = runner._run("sleeper", [sys.executable, "-c", task], dict(os.environ), tmp_path / "r.json", 3)
    assert result is None and runner.failures == ["sleeper: still running after 3 s, stopped"]
    assert time.perf_counter() - started < 30
    status = Path(f"/proc/{pid_file.read_text()}/status")
    deadline = time.perf_counter() + 5
    while status.exists() and "\nState:\tZ" not in status.read_text() and time.perf_counter() < deadline:
        time.sleep(0.1)
    assert not status.exists() or "\nState:\tZ" in status.read_text()  # gone, or dead awaiting its reaper

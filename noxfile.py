"""Sessions: tests per framework, cross-framework, parity with the reference, lint.

Every session builds its own virtualenv from nothing with the pinned versions in
constraints.txt; torch is installed first so pip takes the CPU build.
"""

import nox

nox.options.default_venv_backend = "venv"
nox.options.sessions = ["tests"]

CONSTRAINTS = ("-c", "constraints.txt")
PYTEST = ("pytest", "-q", "-p", "no:cacheprovider")


def install(session, extras):
    """Install the project with `extras`, torch's CPU build first when torch is needed."""
    if {"torch", "all", "parity"} & set(extras):
        session.install(*CONSTRAINTS, "torch==2.13.0")
    session.install(*CONSTRAINTS, "-e", f".[{','.join(extras)}]")


@nox.session(name="tests")
def tests(session):
    """The whole suite: core, every framework present, cross-framework and parity."""
    install(session, ["all", "test", "parity"])
    session.run(*PYTEST, "tests", *session.posargs)


@nox.session(name="tests-core")
def tests_core(session):
    """The framework-neutral core alone, with no framework installed."""
    install(session, ["test"])
    session.run(*PYTEST, "tests/core", *session.posargs)


@nox.session(name="tests-torch")
def tests_torch(session):
    install(session, ["torch", "test"])
    session.run(*PYTEST, "tests/core", "tests/torch", *session.posargs)


@nox.session(name="tests-tf")
def tests_tf(session):
    install(session, ["tf", "test"])
    session.run(*PYTEST, "tests/core", "tests/tf", *session.posargs)


@nox.session(name="tests-flax")
def tests_flax(session):
    install(session, ["flax", "test"])
    session.run(*PYTEST, "tests/core", "tests/flax", *session.posargs)


@nox.session(name="cross")
def cross(session):
    """Frameworks against each other on the same checkpoints."""
    install(session, ["all", "test"])
    session.run(*PYTEST, "tests/cross", *session.posargs)


@nox.session(name="parity")
def parity(session):
    """Ours against the reference implementation (transformers 4.57.6, all three frameworks)."""
    install(session, ["all", "test", "parity"])
    session.run(*PYTEST, "tests/parity", *session.posargs)


@nox.session(name="bench")
def bench(session):
    """Every benchmark, ours against the reference: writes benchmarks/RESULTS.md and
    benchmarks/throughput_vs_length.png (~30 min on 2 cores; `-- --quick --output DIR` for a
    smoke run), then the checkpoint-conversion memory benchmark."""
    install(session, ["all", "parity", "bench"])
    session.run("python", "benchmarks/report.py", *session.posargs)
    if "--quick" not in session.posargs:
        session.run("python", "benchmarks/bench_convert.py")


@nox.session(name="pretrain")
def pretrain(session):
    """Rebuild the bundled checkpoint (xlmr_core/data/xlmr-tiny) from chatterbot-corpus."""
    install(session, ["torch"])
    session.install(*CONSTRAINTS, "chatterbot-corpus", "pyyaml")
    session.run("python", "scripts/pretrain_tiny.py", *session.posargs)


@nox.session(name="lint")
def lint(session):
    session.install(*CONSTRAINTS, "ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(name="fuzz")
def fuzz(session):
    """The fuzz suite at 25x the default slice: some 25,000 seeded hostile files and inputs (10,000
    random texts through slow and fast), each target in a memory-limited child process with a 20 s
    hang limit; ends with `fuzz: N cases, C clean errors, A accepted, X crashes, H hangs` and fails
    on any crash or hang (~15 min on 2 cores). `nox -s tests` runs a slice of about 1,000 cases."""
    install(session, ["all", "test"])
    session.run("python", "-m", "tests.fuzz", "--scale", "25", *session.posargs)


@nox.session(name="distributed")
def distributed(session):
    """The heavy training-at-scale tests: 2-process DDP/FSDP2 and resume (torch, gloo on
    localhost), every JAX layout on 4 fake CPU devices and 2 `jax.distributed` processes
    (also `examples/flax_distributed.py`), Flax/TF resume (~12 min on 2 cores). `nox -s tests`
    runs only a fast slice of them."""
    install(session, ["all", "test"])
    session.install(*CONSTRAINTS, "orbax-checkpoint")
    session.env["XLMR_HEAVY"] = "1"
    files = ["tests/torch/test_distributed.py", "tests/torch/test_resume.py", "tests/flax/test_sharding.py"]
    files += ["tests/flax/test_resume.py", "tests/flax/test_distributed_example.py"]
    files += ["tests/tf/test_resume.py", "tests/tf/test_distribute.py"]
    session.run(*PYTEST, *files, *session.posargs)

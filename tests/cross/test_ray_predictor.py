"""`RayPredictor` in every framework: called on a batch directly and through Ray Data's
`map_batches` on one local cluster (2 CPUs, localhost, shut down at the end), each row's answer
equals the single-process pipeline's; a worker that dies mid-job is restarted and every row comes
back exactly once."""

from __future__ import annotations

import contextlib
import importlib
import os
import signal
from pathlib import Path

import numpy as np
import psutil
import pytest

from tests.conftest import REPO_ROOT
from tests.cross.harness import FRAMEWORKS, load_adapter
from tests.cross.pipeline_checkpoints import checkpoint_factory
from tests.cross.pipeline_checks import assert_same
from xlmr_core.pipelines import PipelineError
from xlmr_core.pretrained import bundled_checkpoint

HEAVY = os.environ.get("XLMR_HEAVY") == "1"
TEXTS = [f"Text {i} is about <mask> and {'more ' * (i % 5)}things." for i in range(23)]
# Scores and vectors within the pipelines' documented batching bound: Ray's batches differ.
BATCHING = 1e-6


def framework_module(framework: str):
    load_adapter(framework)
    return importlib.import_module(f"xlmr_{framework}")


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    return checkpoint_factory(tmp_path_factory)


@pytest.fixture(scope="module")
def ray_cluster():
    """One local Ray cluster for the module: 2 CPUs, no dashboard, workers that import the tests."""
    ray = pytest.importorskip("ray", reason="the [ray] extra is not installed")
    env = {
        key: os.environ[key]
        for key in ("TF_CPP_MIN_LOG_LEVEL", "TOKENIZERS_PARALLELISM")
        if key in os.environ
    }
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
        runtime_env={"env_vars": {**env, "PYTHONPATH": str(REPO_ROOT)}},
    )
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    yield ray
    # The cluster's processes (GCS, raylet, workers) descend from this one: none may outlive it.
    started = psutil.Process().children(recursive=True)
    ray.shutdown()
    # A busy machine can take Ray's workers past a polite wait: those are killed, and only a
    # process that survives the kill is a leak.
    _, slow = psutil.wait_procs(started, timeout=30)
    for process in slow:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    _, alive = psutil.wait_procs(slow, timeout=10)
    assert not alive, f"Ray processes still running after shutdown and SIGKILL: {[p.pid for p in alive]}"


@contextlib.contextmanager
def deadline(seconds: int):
    """Fail a Ray job that hangs instead of waiting for it (SIGALRM interrupts the driver's loop)."""

    def expired(signum, frame):
        raise TimeoutError(f"the Ray job took more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def run_job(ray, predictor, args, kwargs, batch_size=5, **extra):
    """Rows of TEXTS through `map_batches(predictor)` on 2 workers, sorted by id, in at most 120 s."""
    dataset = ray.data.from_items([{"id": i, "text": text} for i, text in enumerate(TEXTS)])
    with deadline(120):
        rows = dataset.map_batches(
            predictor,
            fn_constructor_args=args,
            fn_constructor_kwargs=kwargs,
            concurrency=2,
            batch_size=batch_size,
            **extra,
        ).take_all()
    return sorted(rows, key=lambda row: row["id"])


# ---------------------------------------------------------------- without Ray: the batch call

DIRECT = [("torch", task) for task in ("fill-mask", "sentence-embedding", "text-classification")] + [
    (framework, "sentence-embedding") for framework in FRAMEWORKS[1:]
]


@pytest.mark.parametrize(("framework", "task"), DIRECT)
def test_a_batch_gets_every_rows_answer(framework, task, checkpoints):
    """Called on a `{"text": array}` batch: the other columns kept, the answers the pipeline's
    (embeddings a float32 matrix, other answers JSON-ready values, one per row, a batch of one too)."""
    package = framework_module(framework)
    directory = checkpoints("classifier") if task == "text-classification" else bundled_checkpoint()
    options = {"top_k": 2} if task != "sentence-embedding" else {}
    predictor = package.RayPredictor(task, directory, output_column="out", **options)
    expected = package.pipeline(task, directory, **options)(TEXTS[:7])
    for texts in (TEXTS[:7], TEXTS[:1]):
        batch = {"id": np.arange(len(texts)), "text": np.array(texts)}
        out = predictor(batch)
        assert set(out) == {"id", "text", "out"} and out["id"] is batch["id"]
        if task == "sentence-embedding":
            assert out["out"].dtype == np.float32 and out["out"].shape == (len(texts), 128)
            assert_same(out["out"], np.asarray(expected[: len(texts)]), BATCHING)
        else:
            assert out["out"].dtype == object and out["out"].shape == (len(texts),)
            assert_same(list(out["out"]), expected[: len(texts)], BATCHING)


def test_bad_batches_and_arguments_are_one_line_errors():
    from xlmr_torch import RayPredictor

    directory = bundled_checkpoint()
    with pytest.raises(PipelineError, match=r"^fill-mask pipeline got unknown option 'top_kk'"):
        RayPredictor("fill-mask", directory, top_kk=2)
    with pytest.raises(PipelineError, match=r"^top_k must be a positive integer, got 0$"):
        RayPredictor("fill-mask", directory, top_k=0)
    with pytest.raises(PipelineError, match=r"^output_column must differ from input_column \('text'\)$"):
        RayPredictor("fill-mask", directory, output_column="text")
    predictor = RayPredictor("fill-mask", directory)
    with pytest.raises(
        PipelineError, match=r"^the batch has no column 'text' \(columns: body\); pass input_column=$"
    ):
        predictor({"body": np.array(["a <mask>"])})
    with pytest.raises(PipelineError, match=r"^the batch already has a column 'answer'"):
        predictor({"text": np.array(["a <mask>"]), "answer": np.array([1])})
    with pytest.raises(
        PipelineError, match=r"^text 'no mask here': the input holds no mask token \(<mask>\)$"
    ):
        predictor({"text": np.array(["a <mask>", "no mask here"])})


# ---------------------------------------------------------------- on a local Ray cluster

# torch always; TF and Flax (each worker imports its framework: ~10 s a job) with XLMR_HEAVY=1.
RAY_FRAMEWORKS = FRAMEWORKS if HEAVY else ("torch",)


@pytest.mark.parametrize("framework", RAY_FRAMEWORKS)
def test_map_batches_equals_the_pipeline(framework, ray_cluster):
    """Two workers, batches of 5: every row once, in its row, with the single-process answer."""
    package = framework_module(framework)
    rows = run_job(ray_cluster, package.RayPredictor, ("fill-mask", str(bundled_checkpoint())), {"top_k": 2})
    expected = package.pipeline("fill-mask", bundled_checkpoint(), top_k=2)(TEXTS)
    assert [row["id"] for row in rows] == list(range(len(TEXTS)))
    assert [row["text"] for row in rows] == TEXTS
    assert_same([list(row["answer"]) for row in rows], expected, BATCHING)


class DyingOnce:
    """A torch RayPredictor whose worker process dies on its first batch, once in the whole job
    (a marker file says it happened)."""

    def __init__(self, marker: str, *args, **kwargs):
        from xlmr_torch import RayPredictor

        self.marker = Path(marker)
        self.predictor = RayPredictor(*args, **kwargs)

    def __call__(self, batch):
        try:
            self.marker.open("x").close()
        except FileExistsError:
            return self.predictor(batch)
        os._exit(1)  # the whole worker process, as a crash or an OOM kill would


def test_a_worker_that_dies_is_restarted_and_every_row_comes_back_once(ray_cluster, tmp_path):
    marker = tmp_path / "died"
    directory = str(bundled_checkpoint())
    rows = run_job(
        ray_cluster,
        DyingOnce,
        (str(marker), "sentence-embedding", directory),
        {},
        max_restarts=1,
        max_task_retries=2,
    )
    assert marker.exists()  # a worker did die
    assert [row["id"] for row in rows] == list(range(len(TEXTS)))
    from xlmr_torch import pipeline

    expected = pipeline("sentence-embedding", directory)(TEXTS)
    assert_same(np.stack([row["answer"] for row in rows]), expected, BATCHING)

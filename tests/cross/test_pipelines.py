"""Pipelines across the three frameworks: the same answers, batching that never changes an answer,
lazy streaming, and the same one-line errors. (Against the reference library:
tests/parity/test_pipeline_reference.py.)"""

from __future__ import annotations

import os
import random
import re

import pytest

from tests.conftest import REPO_ROOT
from tests.cross.harness import FRAMEWORKS, load_adapter
from tests.cross.pipeline_checkpoints import checkpoint_factory
from tests.cross.pipeline_checks import CROSS_TASKS, Models, assert_same
from xlmr_core.pipelines import PipelineError

HEAVY = os.environ.get("XLMR_HEAVY") == "1"
BATCH_SIZES = tuple(range(1, 65)) if HEAVY else (3, 64)
TEXTS = [
    "Hello!",
    "Anna lives in Berlin, Germany, and works in Paris.",
    "How are you?",
    "I like robots",
    "John Smith met Maria in Rome last summer, then flew home.",
    "Yes",
    "Where is the station?",
]
# task -> (checkpoint, texts, options) for the batch-independence check
BATCHED = {
    "text-classification": ("classifier", TEXTS, {"top_k": None}),
    "token-classification": ("tagger", TEXTS, {"aggregation_strategy": "average", "ignore_labels": []}),
    "fill-mask": ("tiny", [t.replace(" ", " <mask> ", 1) if " " in t else t + " <mask>" for t in TEXTS], {}),
    "feature-extraction": ("tiny", TEXTS, {"return_tensors": True}),
    "sentence-embedding": ("tiny", TEXTS, {}),
    "zero-shot-classification": ("nli", TEXTS[:4], {"candidate_labels": ["travel", "people", "robots"]}),
    # Windows of 32 tokens: the longer contexts make several rows each, batched with other inputs' rows.
    "question-answering": (
        "qa",
        [
            {"question": q, "context": " ".join(TEXTS[i:] + TEXTS[: 2 * i])}
            for i, q in enumerate(["Who?", "Where does Anna live?", "Where?", "Who met Maria?", "What?"])
        ],
        {"max_seq_len": 32, "doc_stride": 8, "top_k": 2},
    ),
}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    return checkpoint_factory(tmp_path_factory)


@pytest.fixture(scope="module")
def models():
    return Models()


# By default every task runs in torch, and TF and Flax run CROSS_TASKS, Flax at one batch size (each
# new shape compiles): the batching is core code, the frameworks' forward calls are what differs.
# Every task, framework and batch size under XLMR_HEAVY=1.
BATCH_CASES = [
    (framework, task)
    for task in sorted(BATCHED)
    for framework in FRAMEWORKS
    if HEAVY or framework == "torch" or task in CROSS_TASKS
]


@pytest.mark.parametrize(("framework", "task"), BATCH_CASES)
def test_answers_do_not_depend_on_the_batch(framework, task, checkpoints, models):
    """Shuffled inputs in batches of any size give each text its one-at-a-time answer (1e-6),
    in input order; and every framework gives torch's answers (1e-5)."""
    load_adapter(framework)
    name, texts, options = BATCHED[task]
    pipe = models.pipeline(framework, task, checkpoints(name))
    alone = [pipe(text, batch_size=1, **options) for text in texts]
    rng = random.Random(0)
    for batch_size in BATCH_SIZES if HEAVY or framework != "flax" else BATCH_SIZES[:1]:
        order = list(range(len(texts)))
        rng.shuffle(order)
        batched = pipe([texts[i] for i in order], batch_size=batch_size, **options)
        for position, i in enumerate(order):
            # Raw token states (entries ~4) differ by float32 rounding of the packed matmuls,
            # measured up to 1.6e-6 of their size in torch: bounded at 4e-6 relative.
            tolerance, relative = (4e-6, True) if task == "feature-extraction" else (1e-6, False)
            assert_same(batched[position], alone[i], tolerance, f"batch_size={batch_size} text {i}", relative)
    if framework != "torch":
        torch_pipe = models.pipeline("torch", task, checkpoints(name))
        assert_same(alone, [torch_pipe(text, **options) for text in texts], 1e-5)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_an_iterable_is_answered_lazily_in_order(framework, checkpoints, models):
    """Laziness is core code: TF and Flax (new shapes to compile) run it under XLMR_HEAVY=1."""
    if framework != "torch" and not HEAVY:
        pytest.skip("runs with XLMR_HEAVY=1")
    load_adapter(framework)
    pipe = models.pipeline(framework, "text-classification", checkpoints("classifier"))
    pulled = []

    def texts():
        for text in TEXTS:
            pulled.append(text)
            yield text

    answers = pipe(texts(), batch_size=2)
    assert pulled == []  # nothing read before the first answer is asked for
    first = next(answers)
    assert len(pulled) == 2
    assert_same([first, *answers], pipe(TEXTS), 1e-6)


def test_max_question_len_cuts_the_question(checkpoints, models):
    """A longer question is read up to the end of its `max_question_len`-th token (core code)."""
    pipe = models.pipeline("torch", "question-answering", checkpoints("qa"))
    question, context = "Where does Anna live and work every day of the week?", "Anna lives in Berlin."
    offsets = models.tokenizer(checkpoints("qa"))(
        question, add_special_tokens=False, return_offsets_mapping=True
    )
    cut = question[: offsets["offset_mapping"][3][1]]
    answer = pipe(question=question, context=context, max_question_len=4)
    assert answer == pipe(question=cut, context=context)
    assert answer != pipe(question=question, context=context)


def _message(call) -> str:
    with pytest.raises(PipelineError) as caught:
        call()
    message = str(caught.value)
    assert "\n" not in message and len(message) <= 300, message
    return message


# name -> call(framework, models, checkpoints); each must raise PipelineError
ERRORS = {
    "unknown task": lambda fw, m, c: _module(fw).pipeline("fill_mask", c("tiny")),
    "fill-mask on a classifier directory": lambda fw, m, c: _module(fw).pipeline(
        "fill-mask", c("classifier")
    ),
    "fill-mask on a loaded classifier": lambda fw, m, c: _module(fw).pipeline(
        "fill-mask", m.get(fw, "ForSequenceClassification", c("classifier")), m.tokenizer(c("classifier"))
    ),
    "zero-shot without entailment": lambda fw, m, c: m.pipeline(
        fw, "zero-shot-classification", c("classifier")
    ),
    "empty candidate_labels": lambda fw, m, c: m.pipeline(fw, "zero-shot-classification", c("nli"))(
        "text", candidate_labels=[]
    ),
    "top_k 0": lambda fw, m, c: m.pipeline(fw, "fill-mask", c("tiny"))("Hi <mask>", top_k=0),
    "non-string text": lambda fw, m, c: m.pipeline(fw, "text-classification", c("classifier"))(["ok", 3]),
    "misspelled option": lambda fw, m, c: m.pipeline(fw, "text-classification", c("classifier"), topk=2),
    "no mask": lambda fw, m, c: m.pipeline(fw, "fill-mask", c("tiny"))("Hello"),
    "bad aggregation": lambda fw, m, c: m.pipeline(fw, "token-classification", c("tagger"))(
        "Hi", aggregation_strategy="longest"
    ),
    "ranking with a 3-label model": lambda fw, m, c: m.pipeline(fw, "text-ranking", c("classifier")),
    "too long without truncation": lambda fw, m, c: m.pipeline(fw, "text-classification", c("classifier"))(
        "word " * 100
    ),
    "qa empty context": lambda fw, m, c: _qa(fw, m, c)(question="Who?", context=""),
    "qa empty question": lambda fw, m, c: _qa(fw, m, c)([{"question": "", "context": "Anna"}]),
    "qa missing context": lambda fw, m, c: _qa(fw, m, c)({"question": "Who?"}),
    "qa top_k 0": lambda fw, m, c: _qa(fw, m, c)(question="Who?", context="Anna", top_k=0),
    "qa max_answer_len 0": lambda fw, m, c: _qa(fw, m, c)(question="Who?", context="Anna", max_answer_len=0),
    "qa doc_stride too large": lambda fw, m, c: _qa(fw, m, c)(
        question="Who?", context="Anna lives in Berlin. " * 20, max_seq_len=32, doc_stride=30
    ),
    "qa doc_stride over max_seq_len": lambda fw, m, c: _qa(fw, m, c)(
        question="Who?", context="Anna", max_seq_len=32, doc_stride=40
    ),
    "qa max_seq_len over the model": lambda fw, m, c: _qa(fw, m, c)(
        question="Who?", context="Anna", max_seq_len=384
    ),
    "qa lists of different lengths": lambda fw, m, c: _qa(fw, m, c)(question=["a", "b"], context=["c"]),
}


def _qa(framework, models, checkpoints):
    return models.pipeline(framework, "question-answering", checkpoints("qa"))


def _module(framework):
    import importlib

    return importlib.import_module(f"xlmr_{framework}.pipeline")


@pytest.mark.parametrize("case", sorted(ERRORS))
def test_bad_input_is_the_same_one_line_error_everywhere(case, checkpoints, models):
    messages = {}
    for framework in FRAMEWORKS:
        load_adapter(framework)
        messages[framework] = _message(lambda fw=framework: ERRORS[case](fw, models, checkpoints))
    assert len(set(messages.values())) == 1, messages


def test_errors_name_what_is_wrong(checkpoints, models):
    assert "fill_mask" in _message(lambda: ERRORS["unknown task"]("torch", models, checkpoints))
    assert "inputs[1]" in _message(lambda: ERRORS["non-string text"]("torch", models, checkpoints))
    assert "top_k" in _message(lambda: ERRORS["top_k 0"]("torch", models, checkpoints))
    assert "topk" in _message(lambda: ERRORS["misspelled option"]("torch", models, checkpoints))
    assert "candidate_labels" in _message(
        lambda: ERRORS["empty candidate_labels"]("torch", models, checkpoints)
    )
    assert "lm_head" in _message(
        lambda: ERRORS["fill-mask on a classifier directory"]("torch", models, checkpoints)
    )
    assert "entailment" in _message(
        lambda: ERRORS["zero-shot without entailment"]("torch", models, checkpoints)
    )
    for case, named in [
        ("qa empty context", "context"),
        ("qa empty question", "inputs[0]['question']"),
        ("qa missing context", "'context'"),
        ("qa top_k 0", "top_k"),
        ("qa max_answer_len 0", "max_answer_len"),
        ("qa doc_stride too large", "doc_stride"),
        ("qa doc_stride over max_seq_len", "doc_stride"),
        ("qa max_seq_len over the model", "max_seq_len"),
        ("qa lists of different lengths", "same length"),
    ]:
        assert named in _message(lambda case=case: ERRORS[case]("torch", models, checkpoints)), case


def readme_pipeline_blocks() -> list[str]:
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Pipelines", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.+?)\n```", section, flags=re.S)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_readme_pipelines_section_runs_in_every_framework(framework, capsys):
    """Each README block, as written (xlmr_torch) and with its import switched to xlmr_tf / xlmr_flax
    (those two, 20 s each, under XLMR_HEAVY=1; the parity tests hold them to torch's answers)."""
    if framework != "torch" and not HEAVY:
        pytest.skip("runs with XLMR_HEAVY=1")
    load_adapter(framework)
    blocks = readme_pipeline_blocks()
    assert len(blocks) >= 2
    namespace: dict = {}
    for block in blocks:
        assert "from xlmr_torch import pipeline" in block or "pipeline(" not in block.split("\n")[0]
        exec(
            block.replace("from xlmr_torch import pipeline", f"from xlmr_{framework} import pipeline"),
            namespace,
        )
    assert capsys.readouterr().out.strip()

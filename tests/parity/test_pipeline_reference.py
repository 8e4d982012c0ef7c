"""Every pipeline task, every framework, against the reference library's torch pipelines (and
sentence-transformers' `CrossEncoder.rank` for text-ranking) on the same checkpoints: the bundled
one for fill-mask and feature-extraction, tiny random heads with named labels for the rest.
Labels, words, spans and order equal; scores and vectors within 1e-5."""

from __future__ import annotations

import os

import pytest

transformers = pytest.importorskip("transformers")

from tests.cross.harness import FRAMEWORKS, load_adapter  # noqa: E402
from tests.cross.pipeline_checkpoints import checkpoint_factory  # noqa: E402
from tests.cross.pipeline_checks import CROSS_TASKS, Models, assert_same  # noqa: E402

HEAVY = os.environ.get("XLMR_HEAVY") == "1"
TOLERANCE = 1e-5
SENTENCES = ["Hello John Smith, how are you?", "Anna lives in Berlin, Germany.", "I like robots!"]
QUESTION = "Where does Anna live?"
SHORT_CONTEXT = "Anna lives in Berlin."
# About 80 tokens: more than the tiny model's 64, so it is read in windows.
LONG_CONTEXT = "Anna lives in Berlin, Germany, and works in Paris. " * 6
ASK = {"question": QUESTION, "context": SHORT_CONTEXT}  # question-answering keywords
ASK_LONG = {"question": QUESTION, "context": LONG_CONTEXT}

# (task, checkpoint, reference class, inputs, call options)
CASES = [
    ("fill-mask", "tiny", "ForMaskedLM", "Hello, how are <mask>?", {}),
    ("fill-mask", "tiny", "ForMaskedLM", ["Hello <mask>!", "<mask> are <mask>?"], {"top_k": 2}),
    ("fill-mask", "tiny", "ForMaskedLM", ["Good <mask>."], {"targets": ["▁you", "morning"]}),
    ("feature-extraction", "tiny", "Model", ["Hi", "How are you?"], {}),
    ("text-classification", "classifier", "ForSequenceClassification", "Hello world", {}),
    ("text-classification", "classifier", "ForSequenceClassification", ["Hello", "Bye now"], {}),
    ("text-classification", "classifier", "ForSequenceClassification", "Hello", {"top_k": None}),
    ("text-classification", "classifier", "ForSequenceClassification", {"text": "a b", "text_pair": "c"}, {}),
    (
        "text-classification",
        "classifier",
        "ForSequenceClassification",
        ["Hi"],
        {"function_to_apply": "sigmoid", "top_k": 2},
    ),
    ("text-classification", "regression", "ForSequenceClassification", "Hello", {}),
    ("text-classification", "multilabel", "ForSequenceClassification", ["Hello", "x"], {"top_k": None}),
    ("token-classification", "tagger", "ForTokenClassification", SENTENCES, {}),
    *[
        (
            "token-classification",
            "tagger",
            "ForTokenClassification",
            SENTENCES,
            {"aggregation_strategy": strategy, "ignore_labels": []},
        )
        for strategy in ("none", "simple", "first", "average", "max")
    ],
    (
        "zero-shot-classification",
        "nli",
        "ForSequenceClassification",
        SENTENCES[:2],
        {"candidate_labels": ["travel", "people", "robots"]},
    ),
    (
        "zero-shot-classification",
        "nli",
        "ForSequenceClassification",
        "I like robots",
        {"candidate_labels": "travel, robots", "multi_label": True, "hypothesis_template": "It is about {}."},
    ),
    (
        "zero-shot-classification",
        "nli",
        "ForSequenceClassification",
        "I like robots",
        {"candidate_labels": ["x"]},
    ),
    # question-answering: a dict here is the call's keywords (question=, context=)
    ("question-answering", "qa", "ForQuestionAnswering", ASK, {}),
    (
        "question-answering",
        "qa",
        "ForQuestionAnswering",
        ASK_LONG,
        {"max_seq_len": 40, "doc_stride": 10, "top_k": 3},
    ),
    (
        "question-answering",
        "qa",
        "ForQuestionAnswering",
        ASK_LONG,
        {"max_seq_len": 32, "doc_stride": 8, "top_k": 5, "handle_impossible_answer": True},
    ),
    # More candidates than spans: zero-scored ones come back too, in the reference's order.
    (
        "question-answering",
        "qa",
        "ForQuestionAnswering",
        ASK,
        {"top_k": 30, "handle_impossible_answer": True},
    ),
    (
        "question-answering",
        "qa",
        "ForQuestionAnswering",
        ASK_LONG,
        {"max_seq_len": 40, "doc_stride": 10, "top_k": 4, "align_to_words": False, "max_answer_len": 3},
    ),
    (
        "question-answering",
        "qa",
        "ForQuestionAnswering",
        {"question": ["Who?", "Where?"], "context": LONG_CONTEXT},
        {},
    ),
    (
        "question-answering",
        "qa",
        "ForQuestionAnswering",
        [[{"question": "Who?", "context": SHORT_CONTEXT}, {"question": "Where?", "context": LONG_CONTEXT}]],
        {"max_seq_len": 48, "doc_stride": 16},
    ),
]


# The cases TF and Flax also run by default: one per task but CROSS_TASKS, whose TF and Flax answers
# the cross tests hold to torch's (and torch's are held to the reference's here). Every case in
# every framework under XLMR_HEAVY=1.
REPRESENTATIVE = {1, 3, 14, 17}
assert {CASES[i][0] for i in REPRESENTATIVE} | set(CROSS_TASKS) == {case[0] for case in CASES}
MATCH_CASES = [
    pytest.param(framework, i, id=f"{CASES[i][0]}-{i}-{framework}")
    for i in range(len(CASES))
    for framework in FRAMEWORKS
    if HEAVY or framework == "torch" or i in REPRESENTATIVE
]
# Framework-neutral behaviour (answer shapes of construction options): torch by default.
CORE_ONLY = FRAMEWORKS if HEAVY else ("torch",)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    return checkpoint_factory(tmp_path_factory)


@pytest.fixture(scope="module")
def models():
    return Models()


@pytest.fixture(scope="module")
def reference(checkpoints):
    """`run(task, checkpoint, head, inputs, options)`: the reference pipeline's answer."""
    made = {}

    def run(task, name, head, inputs, options):
        if (task, name) not in made:
            directory = checkpoints(name)
            model = getattr(transformers, f"XLMRoberta{head}").from_pretrained(directory)
            tokenizer = transformers.XLMRobertaTokenizerFast.from_pretrained(directory)
            made[task, name] = transformers.pipeline(task, model=model, tokenizer=tokenizer, device="cpu")
        return call(made[task, name], inputs, options)

    return run


def call(pipe, inputs, options):
    """`pipe(inputs, **options)`; a question-answering case's dict is keywords, a list of one list
    is positional inputs."""
    if isinstance(inputs, dict) and "question" in inputs:
        return pipe(**inputs, **options)
    if isinstance(inputs, list) and len(inputs) == 1 and isinstance(inputs[0], list):
        return pipe(inputs[0], **options)
    return pipe(inputs, **options)


@pytest.mark.parametrize(("framework", "case"), MATCH_CASES)
def test_pipeline_matches_reference(framework, case, checkpoints, models, reference):
    load_adapter(framework)  # skips a framework that is not installed
    task, name, head, inputs, options = CASES[case]
    expected = reference(task, name, head, inputs, dict(options))
    ours = call(models.pipeline(framework, task, checkpoints(name)), inputs, options)
    assert_same(ours, expected, TOLERANCE)


@pytest.mark.parametrize("framework", CORE_ONLY)
def test_options_given_at_construction_shape_answers_as_the_reference(framework, checkpoints, models):
    """top_k given when the pipeline is built: the reference nests a single text's answer."""
    load_adapter(framework)
    directory = checkpoints("classifier")
    model = transformers.XLMRobertaForSequenceClassification.from_pretrained(directory)
    tokenizer = transformers.XLMRobertaTokenizerFast.from_pretrained(directory)
    expected = transformers.pipeline("text-classification", model=model, tokenizer=tokenizer, top_k=2)
    ours = models.pipeline(framework, "text-classification", directory, top_k=2)
    for inputs in ("Hello", ["Hello"], ["Hello", "Bye"]):
        assert_same(ours(inputs), expected(inputs), TOLERANCE)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_text_ranking_matches_cross_encoder_rank(framework, checkpoints, models):
    sentence_transformers = pytest.importorskip("sentence_transformers")
    load_adapter(framework)
    directory = checkpoints("ranker")
    passages = ["Berlin is in Germany.", "Robots are machines.", "Paris is in France.", "Hello"]
    encoder = sentence_transformers.CrossEncoder(str(directory), device="cpu")
    expected = encoder.rank("Where is Berlin?", passages)
    ours = models.pipeline(framework, "text-ranking", directory)("Where is Berlin?", passages)
    assert_same(
        ours, [{"corpus_id": e["corpus_id"], "score": float(e["score"])} for e in expected], TOLERANCE
    )
    top = models.pipeline(framework, "text-ranking", directory)("Where is Berlin?", passages, top_k=2)
    assert_same(top, ours[:2], 0.0)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_sentence_embedding_is_mean_pooled_reference_features(framework, models):
    """sentence-embedding against the reference feature-extraction pipeline, mean-pooled and
    L2-normalised here by hand (the default of `encode`)."""
    import numpy as np

    from xlmr_core.pretrained import bundled_checkpoint

    load_adapter(framework)
    directory = bundled_checkpoint()
    reference = transformers.pipeline(
        "feature-extraction",
        model=transformers.XLMRobertaModel.from_pretrained(directory),
        tokenizer=transformers.XLMRobertaTokenizerFast.from_pretrained(directory),
    )
    texts = ["Hi", "How are you today?"]
    expected = []
    for text in texts:
        vector = np.asarray(reference(text)[0]).mean(axis=0)
        expected.append(vector / np.linalg.norm(vector))
    ours = models.pipeline(framework, "sentence-embedding", directory)(texts)
    assert_same(ours, np.stack(expected), TOLERANCE)

"""Every pipeline task, every framework, against the reference library's torch pipelines (and
sentence-transformers' `CrossEncoder.rank` for text-ranking) on the same checkpoints: the bundled
one for fill-mask and feature-extraction, tiny random heads with named labels for the rest.
Labels, words, spans and order equal; scores and vectors within 1e-5."""

from __future__ import annotations

import pytest

transformers = pytest.importorskip("transformers")

from tests.cross.harness import FRAMEWORKS, load_adapter  # noqa: E402
from tests.cross.pipeline_checkpoints import checkpoint_factory  # noqa: E402
from tests.cross.pipeline_checks import Models, assert_same  # noqa: E402

TOLERANCE = 1e-5
SENTENCES = ["Hello John Smith, how are you?", "Anna lives in Berlin, Germany.", "I like robots!"]

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
]


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
        return made[task, name](inputs, **options)

    return run


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("case", range(len(CASES)), ids=lambda i: f"{CASES[i][0]}-{i}")
def test_pipeline_matches_reference(framework, case, checkpoints, models, reference):
    load_adapter(framework)  # skips a framework that is not installed
    task, name, head, inputs, options = CASES[case]
    expected = reference(task, name, head, inputs, dict(options))
    ours = models.pipeline(framework, task, checkpoints(name))(inputs, **options)
    assert_same(ours, expected, TOLERANCE)


@pytest.mark.parametrize("framework", FRAMEWORKS)
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

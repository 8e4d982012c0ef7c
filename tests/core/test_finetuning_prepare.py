"""Task preparation checked by hand on the bundled tokenizer (xlmr-tiny's 4,002 pieces): label ids,
sub-word alignment, choice packing, language-modelling rows and QA windows with a small stride."""

from __future__ import annotations

import numpy as np
import pytest

from xlmr_core import XLMRobertaTokenizer, XLMRobertaTokenizerFast
from xlmr_core.finetuning import ArgumentError, DataError, FinetuningError, label_maps, prepare, read_examples
from xlmr_core.modeling_utils import IGNORE_INDEX as X
from xlmr_core.pretrained import BUNDLED_CHECKPOINT


@pytest.fixture(scope="module")
def tokenizer():
    return XLMRobertaTokenizerFast.from_pretrained(BUNDLED_CHECKPOINT)


def pieces(tokenizer, ids):
    return tokenizer.convert_ids_to_tokens([int(i) for i in ids])


def test_text_classification_labels_are_sorted_names_and_rows_are_padded(tokenizer):
    examples = [
        {"text": "ok", "label": "pos"},
        {"text": "bad day", "text_pair": "really", "label": "neg"},
    ]
    data = prepare("text-classification", examples, tokenizer)
    assert data.id2label == {0: "neg", 1: "pos"}
    assert data.problem_type == "single_label_classification"
    assert data.features["labels"].tolist() == [1, 0]
    assert data.features["labels"].dtype == np.int64
    ids, mask = data.features["input_ids"], data.features["attention_mask"]
    # "ok" is <s> ▁o k </s> padded to the pair's 11: <s> A </s></s> B </s>.
    assert pieces(tokenizer, ids[0, :4]) == ["<s>", "▁o", "k", "</s>"]
    assert ids[0, 4:].tolist() == [tokenizer.pad_token_id] * 7 and mask[0].tolist() == [1] * 4 + [0] * 7
    assert pieces(tokenizer, ids[1]).count("</s>") == 3 and mask[1].all()


def test_numeric_labels_are_float32_regression(tokenizer):
    data = prepare("text-classification", [{"text": "a", "label": 1}, {"text": "b", "label": 0.5}], tokenizer)
    assert data.problem_type == "regression" and data.id2label is None
    assert data.features["labels"].dtype == np.float32 and data.features["labels"].tolist() == [1.0, 0.5]


def test_validation_uses_the_training_labels_and_refuses_unknown_ones(tmp_path, tokenizer):
    train = prepare(
        "text-classification", [{"text": "a", "label": "x"}, {"text": "b", "label": "y"}], tokenizer
    )
    valid = prepare("text-classification", [{"text": "c", "label": "y"}], tokenizer, label2id=train.label2id)
    assert valid.id2label == {0: "x", 1: "y"} and valid.features["labels"].tolist() == [1]
    path = tmp_path / "valid.jsonl"
    path.write_text('{"text": "c", "label": "y"}\n\n{"text": "d", "label": "z"}\n')
    with pytest.raises(
        DataError, match=rf"^{path}:3: field 'label': 'z' is not a label of the training data"
    ):
        prepare(
            "text-classification",
            read_examples("text-classification", path),
            tokenizer,
            label2id=train.label2id,
        )
    with pytest.raises(DataError, match="regression"):
        prepare("text-classification", [{"text": "c", "label": 2}], tokenizer, label2id=train.label2id)


def test_token_classification_tags_the_first_piece_of_each_word(tokenizer):
    # Hand alignment: Bonjour = ▁B on jo ur, tout = ▁to ut, lemonde = ▁le mo n de.
    data = prepare(
        "token-classification",
        [{"tokens": ["Bonjour", "tout", "lemonde"], "tags": ["B-PER", "O", "I-LOC"]}],
        tokenizer,
    )
    ids = data.features["input_ids"][0]
    assert pieces(tokenizer, ids) == [
        "<s>",
        "▁B",
        "on",
        "jo",
        "ur",
        "▁to",
        "ut",
        "▁le",
        "mo",
        "n",
        "de",
        "</s>",
    ]
    assert data.id2label == {0: "B-PER", 1: "I-LOC", 2: "O"}
    assert data.features["labels"][0].tolist() == [X, 0, X, X, X, 2, X, 1, X, X, X, X]
    assert data.offsets[0].tolist() == [-1, 0, 0, 0, 0, 1, 1, 2, 2, 2, 2, -1]


def test_token_classification_truncation_cuts_whole_tags_at_the_end(tokenizer):
    data = prepare(
        "token-classification",
        [{"tokens": ["Bonjour", "tout"], "tags": ["B-PER", "O"]}],
        tokenizer,
        max_length=6,
    )
    # <s> ▁B on jo ur </s>: "tout" is cut, so only Bonjour's tag is trained on.
    assert data.features["labels"][0].tolist() == [X, 0, X, X, X, X]


def test_the_slow_tokenizer_aligns_words_the_same_way(tokenizer):
    slow = XLMRobertaTokenizer.from_pretrained(BUNDLED_CHECKPOINT)
    record = [{"tokens": ["Bonjour", "tout", "lemonde"], "tags": ["B-PER", "O", "I-LOC"]}]
    a, b = prepare("token-classification", record, tokenizer), prepare("token-classification", record, slow)
    assert all((a.features[k] == b.features[k]).all() for k in a.features)


def test_label_maps(tokenizer):
    assert label_maps("token-classification", [{"tokens": ["a", "b"], "tags": ["O", "B-X"]}]) == (
        {0: "B-X", 1: "O"},
        None,
    )
    assert label_maps("multiple-choice", [{"question": "", "choices": ["a", "b"], "label": 0}]) == (
        None,
        None,
    )


def test_multiple_choice_pairs_the_question_with_each_choice(tokenizer):
    data = prepare("multiple-choice", [{"question": "Q?", "choices": ["a b", "c"], "label": 1}], tokenizer)
    ids, mask = data.features["input_ids"], data.features["attention_mask"]
    assert ids.shape == (1, 2, 10) and data.features["labels"].tolist() == [1]
    assert pieces(tokenizer, ids[0, 0]) == ["<s>", "▁", "Q", "?", "</s>", "</s>", "▁a", "▁", "b", "</s>"]
    assert pieces(tokenizer, ids[0, 1, :9]) == ["<s>", "▁", "Q", "?", "</s>", "</s>", "▁", "c", "</s>"]
    assert mask[0, 1].tolist() == [1] * 9 + [0]


@pytest.mark.parametrize("task", ["masked-lm", "causal-lm"])
def test_a_long_text_becomes_consecutive_rows_without_losing_a_token(tokenizer, task):
    text = "the cat sat on the mat " * 3
    body = tokenizer(text, add_special_tokens=False)["input_ids"]
    data = prepare(task, [{"text": "hi"}, {"text": text}], tokenizer, max_length=10)
    ids, mask = data.features["input_ids"], data.features["attention_mask"]
    rows = -(-len(body) // 8)  # 8 tokens between <s> and </s> per row
    assert data.feature_to_example.tolist() == [0] + [1] * rows
    joined = [t for row, m in zip(ids[1:], mask[1:]) for t in row[m == 1][1:-1].tolist()]
    assert joined == body
    assert (ids[mask == 1].reshape(-1)[:1] == 0).all() and ids[1:, 0].tolist() == [0] * rows
    if task == "causal-lm":
        assert (data.features["labels"] == np.where(mask == 1, ids, X)).all()
    else:
        assert "labels" not in data.features  # masked per batch


QA = {
    "id": "a",
    "question": "Who?",
    "context": "The cat sat on the mat today",
    "answers": {"text": ["mat"], "answer_start": [19]},
}


def test_qa_windows_point_at_the_answer_only_where_it_is_whole(tokenizer):
    # max_length 9 = <s> ▁Who ? </s></s> + 3 context tokens + </s>; stride 2 moves one token a window.
    unanswerable = {**QA, "id": "b", "answers": {"text": [], "answer_start": []}}
    data = prepare("question-answering", [QA, unanswerable], tokenizer, max_length=9, doc_stride=2)
    ids = data.features["input_ids"]
    contexts = [pieces(tokenizer, row[5:8]) for row in ids[:11]]
    assert contexts[6] == ["▁on", "▁the", "▁ma"]  # the answer's first piece only
    assert contexts[7] == ["▁the", "▁ma", "t"]
    assert contexts[8] == ["▁ma", "t", "▁to"]
    assert contexts[9] == ["t", "▁to", "da"]  # its last piece only
    starts, ends = data.features["start_positions"], data.features["end_positions"]
    expected_starts = [0] * 7 + [6, 5] + [0] * 2
    expected_ends = [0] * 7 + [7, 6] + [0] * 2
    assert starts[:11].tolist() == expected_starts and ends[:11].tolist() == expected_ends
    assert data.feature_to_example.tolist() == [0] * 11 + [1] * 11
    assert (starts[11:] == 0).all() and (ends[11:] == 0).all()
    assert len(data.offsets) == 22 and data.offsets[7]["in_context"].tolist() == [False] * 5 + [True] * 3 + [
        False
    ]


def test_qa_refuses_a_stride_that_cannot_advance_and_a_question_that_fills_the_window(tokenizer):
    # A stride too large is the argument's fault, not the record's: named, no line given.
    with pytest.raises(
        ArgumentError,
        match=r"^doc_stride 3 must be smaller than 3, the context tokens that fit beside a 2-token "
        r"question in a window of max_length=9$",
    ) as refused:
        prepare("question-answering", [QA], tokenizer, max_length=9, doc_stride=3)
    assert not isinstance(refused.value, DataError) and refused.value.argument == "doc_stride"
    long_question = {**QA, "question": "who is it that sat there?"}
    with pytest.raises(DataError, match=r"^record 1: field 'question': \d+ tokens leave no room"):
        prepare("question-answering", [long_question], tokenizer, max_length=9, doc_stride=2)


def test_qa_needs_the_fast_tokenizer():
    slow = XLMRobertaTokenizer.from_pretrained(BUNDLED_CHECKPOINT)
    with pytest.raises(FinetuningError, match="XLMRobertaTokenizerFast"):
        prepare("question-answering", [QA], slow, max_length=20, doc_stride=2)


@pytest.mark.parametrize(("name", "value"), [("max_length", 2), ("max_length", "64"), ("doc_stride", -1)])
def test_bad_lengths_are_refused(tokenizer, name, value):
    with pytest.raises(FinetuningError, match=rf"^{name} must be an integer"):
        prepare("masked-lm", [{"text": "a"}], tokenizer, **{name: value})


def test_a_validation_tag_unknown_to_training_is_refused(tokenizer):
    train = prepare("token-classification", [{"tokens": ["a", "b"], "tags": ["B-X", "O"]}], tokenizer)
    with pytest.raises(
        DataError, match=r"^record 2: field 'tags': 'B-Y' is not a label of the training data"
    ):
        prepare(
            "token-classification",
            [{"tokens": ["a"], "tags": ["O"]}, {"tokens": ["c", "d"], "tags": ["O", "B-Y"]}],
            tokenizer,
            label2id=train.label2id,
        )

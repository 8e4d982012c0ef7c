"""`encode` against the `sentence-transformers` package, on the bundled checkpoint.

Both directions: a directory our `save_pretrained(..., sentence_transformers=True)` wrote loads
in sentence-transformers and gives, through its own `encode`, the embeddings every framework's
`encode` gives by default; and a directory sentence-transformers itself saved (its newer file
spellings) loads in every framework with the same defaults and the same embeddings. <= 1e-5.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

sentence_transformers = pytest.importorskip("sentence_transformers")

from tests.cross.harness import FRAMEWORKS, OUTPUT_TOLERANCE  # noqa: E402
from tests.cross.test_encode import TEXTS, base_class  # noqa: E402
from xlmr_core import XLMRobertaTokenizerFast  # noqa: E402
from xlmr_core.embeddings import read_sentence_transformers  # noqa: E402
from xlmr_core.pretrained import bundled_checkpoint  # noqa: E402

# (pooling, normalize, max_seq_length) written into three directories
SETTINGS = [("mean", True, 64), ("cls", True, 64), ("max", False, 12)]


@pytest.fixture(scope="module")
def directories(tmp_path_factory):
    """{settings: directory}, written by xlmr_torch's save_pretrained, tokenizer beside it."""
    xlmr_torch = pytest.importorskip("xlmr_torch", reason="sentence-transformers runs on torch")
    model = xlmr_torch.XLMRobertaModel.from_pretrained(bundled_checkpoint())
    tokenizer = XLMRobertaTokenizerFast.from_pretrained(bundled_checkpoint())
    written = {}
    for pooling, normalize, max_seq_length in SETTINGS:
        directory = tmp_path_factory.mktemp(f"st-{pooling}")
        model.save_pretrained(
            directory,
            sentence_transformers={
                "pooling": pooling,
                "normalize": normalize,
                "max_seq_length": max_seq_length,
            },
        )
        tokenizer.save_pretrained(directory)
        written[(pooling, normalize, max_seq_length)] = directory
    return written


@pytest.fixture(scope="module")
def models(directories):
    """Each installed framework's base model, loaded once from the first directory.

    The three directories hold the same weights, so a test of another directory gives the
    loaded model that directory's files, read as `from_pretrained` reads them."""
    loaded = {}
    for framework in FRAMEWORKS:
        try:
            cls = base_class(framework)
        except pytest.skip.Exception:
            continue
        loaded[framework] = cls.from_pretrained(directories[SETTINGS[0]])
        assert loaded[framework].sentence_transformers == read_sentence_transformers(directories[SETTINGS[0]])
    return loaded


def reference_embeddings(directory) -> np.ndarray:
    model = sentence_transformers.SentenceTransformer(str(directory), device="cpu", local_files_only=True)
    return model.encode(TEXTS, batch_size=3, convert_to_numpy=True)


@pytest.mark.parametrize("settings", SETTINGS, ids=lambda s: f"{s[0]}-normalize{s[1]}-{s[2]}")
def test_our_directory_gives_sentence_transformers_embeddings_in_every_framework(
    models, directories, settings
):
    directory = directories[settings]
    expected = reference_embeddings(directory)
    assert expected.shape == (len(TEXTS), 128)
    tokenizer = XLMRobertaTokenizerFast.from_pretrained(directory)
    for framework, model in models.items():
        model.sentence_transformers = read_sentence_transformers(directory)
        got = model.encode(TEXTS, tokenizer)  # every default from the directory's files
        diff = float(np.max(np.abs(got - expected)))
        assert diff <= OUTPUT_TOLERANCE * max(1.0, float(np.max(np.abs(expected)))), (framework, diff)


def test_a_directory_sentence_transformers_saved_loads_with_its_settings(models, directories, tmp_path):
    """sentence-transformers' own save: `pooling_mode`, its new module paths, the length in the tokenizer."""
    from sentence_transformers.sentence_transformer import modules

    source = directories[SETTINGS[0]]
    transformer = modules.Transformer(str(source), max_seq_length=10)
    pooling = modules.Pooling(128, pooling_mode="cls")
    model = sentence_transformers.SentenceTransformer(
        modules=[transformer, pooling, modules.Normalize()], device="cpu"
    )
    model.save(str(tmp_path))
    expected = model.encode(TEXTS, batch_size=4, convert_to_numpy=True)

    settings = read_sentence_transformers(tmp_path)
    assert (settings.pooling, settings.normalize, settings.unsupported_modules) == ("cls", True, ())
    tokenizer = XLMRobertaTokenizerFast.from_pretrained(tmp_path)
    assert tokenizer.model_max_length == 10  # where sentence-transformers now keeps max_seq_length
    for framework, reference in models.items():
        loaded = type(reference).from_pretrained(tmp_path)
        diff = float(np.max(np.abs(loaded.encode(TEXTS, tokenizer) - expected)))
        assert diff <= OUTPUT_TOLERANCE, (framework, diff)

    # Written back by us (the length stays in the tokenizer's files), it loads there again the same.
    again = tmp_path / "again"
    loaded.save_pretrained(again, sentence_transformers=True)
    tokenizer.save_pretrained(again)
    assert float(np.max(np.abs(reference_embeddings(again) - expected))) <= OUTPUT_TOLERANCE


def test_do_lower_case_as_sentence_transformers_applies_it(models, directories, tmp_path):
    directory = tmp_path / "lower"
    shutil.copytree(directories[SETTINGS[0]], directory)
    config_file = directory / "sentence_bert_config.json"
    config_file.write_text(json.dumps({**json.loads(config_file.read_text()), "do_lower_case": True}))
    expected = reference_embeddings(directory)
    assert float(np.max(np.abs(expected - reference_embeddings(directories[SETTINGS[0]])))) > 1e-3
    tokenizer = XLMRobertaTokenizerFast.from_pretrained(directory)
    for framework, model in models.items():
        model.sentence_transformers = read_sentence_transformers(directory)
        diff = float(np.max(np.abs(model.encode(TEXTS, tokenizer) - expected)))
        assert diff <= OUTPUT_TOLERANCE, (framework, diff)

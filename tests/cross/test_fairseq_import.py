"""`xlmr-convert from-fairseq`: a fairseq XLM-R release imports with the numbers it had.

The tests write small fairseq-layout checkpoints themselves (random weights, `torch.save` of
`{"args": Namespace, "model": ...}` or `{"cfg": ..., "model": ...}`), import them, and
compare our PyTorch model with a numpy forward of the fairseq encoder written here from
fairseq's definition (post-LN transformer, exact GELU, learned positions offset by the
padding index) — independent of every model file in this repository.
"""

from __future__ import annotations

import argparse
import math
import pickle

import numpy as np
import pytest

from conversion.cli import main
from conversion.errors import EXIT_CORRUPT_FILE, EXIT_MISSING_FILE, EXIT_SHAPE_MISMATCH

torch = pytest.importorskip("torch")

HIDDEN, LAYERS, HEADS, FFN, DICT_LINES, MAX_POSITIONS = 32, 2, 4, 37, 20, 20
PAD = 1
EPS = 1e-5


# ---------------------------------------------------------------- fairseq checkpoints
def fairseq_weights(seed: int = 0, vocab: int = 4 + DICT_LINES + 1) -> dict[str, np.ndarray]:
    """Random weights under fairseq's RoBERTa names (separate q/k/v), `encoder.` prefix."""
    rng = np.random.default_rng(seed)

    def normal(*shape, scale=0.2):
        return rng.normal(0.0, scale, shape).astype(np.float32)

    s = "encoder.sentence_encoder."
    w = {
        s + "embed_tokens.weight": normal(vocab, HIDDEN),
        s + "embed_positions.weight": normal(MAX_POSITIONS + PAD + 1, HIDDEN),
        s + "emb_layer_norm.weight": 1 + normal(HIDDEN, scale=0.1),
        s + "emb_layer_norm.bias": normal(HIDDEN, scale=0.1),
    }
    for i in range(LAYERS):
        layer = f"{s}layers.{i}."
        for name, rows, cols in [
            ("self_attn.q_proj", HIDDEN, HIDDEN),
            ("self_attn.k_proj", HIDDEN, HIDDEN),
            ("self_attn.v_proj", HIDDEN, HIDDEN),
            ("self_attn.out_proj", HIDDEN, HIDDEN),
            ("fc1", FFN, HIDDEN),
            ("fc2", HIDDEN, FFN),
        ]:
            w[f"{layer}{name}.weight"] = normal(rows, cols)
            w[f"{layer}{name}.bias"] = normal(rows, scale=0.1)
        for name in ("self_attn_layer_norm", "final_layer_norm"):
            w[f"{layer}{name}.weight"] = 1 + normal(HIDDEN, scale=0.1)
            w[f"{layer}{name}.bias"] = normal(HIDDEN, scale=0.1)
    w["encoder.lm_head.dense.weight"] = normal(HIDDEN, HIDDEN)
    w["encoder.lm_head.dense.bias"] = normal(HIDDEN, scale=0.1)
    w["encoder.lm_head.layer_norm.weight"] = 1 + normal(HIDDEN, scale=0.1)
    w["encoder.lm_head.layer_norm.bias"] = normal(HIDDEN, scale=0.1)
    w["encoder.lm_head.weight"] = w[s + "embed_tokens.weight"]
    w["encoder.lm_head.bias"] = normal(vocab, scale=0.1)
    return w


def fairseq_state(weights, *, fused: bool, prefix: str) -> dict:
    """The `model` entry of a fairseq checkpoint: torch tensors, optional fused in_proj, prefix."""
    state = {}
    for name, array in weights.items():
        state[prefix + name[len("encoder") :]] = torch.from_numpy(array)
    embed = f"{prefix}.sentence_encoder.embed_tokens.weight"
    state[f"{prefix}.lm_head.weight"] = state[embed]  # tied: one storage, as fairseq saves it
    if fused:
        for i in range(LAYERS):
            attn = f"{prefix}.sentence_encoder.layers.{i}.self_attn."
            for leaf in ("weight", "bias"):
                parts = [state.pop(f"{attn}{p}_proj.{leaf}") for p in "qkv"]
                state[f"{attn}in_proj_{leaf}"] = torch.cat(parts)
    state[f"{prefix}.sentence_encoder.version"] = torch.tensor([2.0])  # a buffer fairseq saves
    return state


def model_args() -> dict:
    return dict(
        arch="xlmr_tiny",
        encoder_embed_dim=HIDDEN,
        encoder_layers=LAYERS,
        encoder_attention_heads=HEADS,
        encoder_ffn_embed_dim=FFN,
        activation_fn="gelu",
        dropout=0.1,
        attention_dropout=0.1,
        max_positions=MAX_POSITIONS,
        encoder_normalize_before=False,
    )


def write_release(
    directory, weights, *, fused=False, prefix="encoder", meta="args", legacy=False, tokens=None
):
    """A fairseq release folder: model.pt (+ args or cfg, training leftovers) and dict.txt."""
    directory.mkdir(parents=True, exist_ok=True)
    checkpoint = {
        "model": fairseq_state(weights, fused=fused, prefix=prefix),
        "optimizer_history": [{"criterion_name": "MaskedLmLoss", "num_updates": 10, "best": np.float64(2.5)}],
        "extra_state": {"epoch": 3, "train_iterator": {"epoch": 3}},
    }
    if meta == "args":
        checkpoint["args"] = argparse.Namespace(**model_args())
    else:
        checkpoint["cfg"] = {"model": model_args(), "task": {"_name": "masked_lm"}}
    torch.save(checkpoint, directory / "model.pt", _use_new_zipfile_serialization=not legacy)
    tokens = tokens if tokens is not None else [f"tok{i}" for i in range(DICT_LINES)]
    (directory / "dict.txt").write_text("".join(f"{t} {100 - i}\n" for i, t in enumerate(tokens)))
    return directory


# ---------------------------------------------------------------- fairseq's forward, in numpy
def _layer_norm(x, weight, bias):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + EPS) * weight + bias


_erf = np.vectorize(math.erf)


def _gelu(x):
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def fairseq_mlm_logits(w: dict[str, np.ndarray], ids: np.ndarray) -> np.ndarray:
    """RoBERTa's masked-LM logits as fairseq computes them, in float64."""
    w = {k: v.astype(np.float64) for k, v in w.items()}
    s = "encoder.sentence_encoder."
    not_pad = ids != PAD
    positions = np.cumsum(not_pad, axis=1) * not_pad + PAD  # fairseq make_positions
    x = w[s + "embed_tokens.weight"][ids] + w[s + "embed_positions.weight"][positions]
    x = _layer_norm(x, w[s + "emb_layer_norm.weight"], w[s + "emb_layer_norm.bias"])
    batch, length, _ = x.shape
    head_dim = HIDDEN // HEADS
    for i in range(LAYERS):
        p = f"{s}layers.{i}."

        def linear(h, name, p=p):
            return h @ w[f"{p}{name}.weight"].T + w[f"{p}{name}.bias"]

        def heads(h):
            return h.reshape(batch, length, HEADS, head_dim).transpose(0, 2, 1, 3)

        q = heads(linear(x, "self_attn.q_proj")) * head_dim**-0.5
        k, v = heads(linear(x, "self_attn.k_proj")), heads(linear(x, "self_attn.v_proj"))
        scores = q @ k.transpose(0, 1, 3, 2)
        scores = np.where(not_pad[:, None, None, :], scores, -np.inf)
        probs = np.exp(scores - scores.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        attended = (probs @ v).transpose(0, 2, 1, 3).reshape(batch, length, HIDDEN)
        x = _layer_norm(x + linear(attended, "self_attn.out_proj"), *_ln(w, p + "self_attn_layer_norm"))
        x = _layer_norm(x + linear(_gelu(linear(x, "fc1")), "fc2"), *_ln(w, p + "final_layer_norm"))
    h = _gelu(x @ w["encoder.lm_head.dense.weight"].T + w["encoder.lm_head.dense.bias"])
    h = _layer_norm(h, *_ln(w, "encoder.lm_head.layer_norm"))
    return h @ w["encoder.lm_head.weight"].T + w["encoder.lm_head.bias"]


def _ln(w, name):
    return w[f"{name}.weight"], w[f"{name}.bias"]


def token_batch(vocab: int) -> np.ndarray:
    rng = np.random.default_rng(7)
    ids = rng.integers(4, vocab, size=(3, 9))
    ids[:, 0], ids[:, -1] = 0, 2
    ids[1, 6:] = PAD  # a padded row
    ids[1, 5] = 2
    return ids


# ---------------------------------------------------------------- tests
@pytest.mark.parametrize(
    "fused, prefix, meta, legacy",
    [
        pytest.param(False, "encoder", "cfg", False, id="qkv-encoder-cfg-zip"),
        pytest.param(True, "decoder", "args", True, id="in_proj-decoder-args-legacy"),
    ],
)
def test_import_reproduces_fairseq_outputs(tmp_path, fused, prefix, meta, legacy):
    from xlmr_torch import XLMRobertaForMaskedLM

    weights = fairseq_weights()
    source = write_release(
        tmp_path / "fairseq", weights, fused=fused, prefix=prefix, meta=meta, legacy=legacy
    )
    assert main(["from-fairseq", str(source), str(tmp_path / "xlmr"), "--quiet"]) == 0

    model = XLMRobertaForMaskedLM.from_pretrained(tmp_path / "xlmr")
    ids = token_batch(model.config.vocab_size)
    with torch.no_grad():
        ours = model(
            input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy((ids != PAD).astype(np.int64))
        )
    expected = fairseq_mlm_logits(weights, ids)
    valid = ids != PAD
    assert np.max(np.abs(ours.logits.numpy()[valid] - expected[valid])) <= 1e-5


def test_import_writes_tokenizer_files_whose_ids_match_the_embedding(tmp_path, small_sentencepiece_model):
    import sentencepiece

    processor = sentencepiece.SentencePieceProcessor(model_file=str(small_sentencepiece_model))
    pieces = [processor.id_to_piece(i) for i in range(3, processor.get_piece_size())]
    weights = fairseq_weights(vocab=4 + len(pieces) + 1)
    source = write_release(tmp_path / "fairseq", weights, tokens=pieces)
    (source / "sentencepiece.bpe.model").write_bytes(small_sentencepiece_model.read_bytes())
    assert main(["from-fairseq", str(source), str(tmp_path / "xlmr"), "--quiet"]) == 0

    from xlmr_core import XLMRobertaTokenizer

    names = {p.name for p in (tmp_path / "xlmr").iterdir()}
    assert {"sentencepiece.bpe.model", "tokenizer.json", "tokenizer_config.json", "config.json"} <= names
    tokenizer = XLMRobertaTokenizer.from_pretrained(tmp_path / "xlmr")
    ids = tokenizer("This is a test")["input_ids"]
    # fairseq id of a piece: 4 + its dict.txt line; dict.txt line j is SentencePiece piece j + 3.
    fairseq_ids = [0] + [4 + pieces.index(p) for p in processor.encode("This is a test", out_type=str)] + [2]
    assert ids == fairseq_ids


def test_dictionary_out_of_sentencepiece_order_is_refused(tmp_path, small_sentencepiece_model, capsys):
    import sentencepiece

    processor = sentencepiece.SentencePieceProcessor(model_file=str(small_sentencepiece_model))
    pieces = [processor.id_to_piece(i) for i in range(3, processor.get_piece_size())]
    pieces[5], pieces[6] = pieces[6], pieces[5]
    source = write_release(tmp_path / "fairseq", fairseq_weights(vocab=4 + len(pieces) + 1), tokens=pieces)
    (source / "sentencepiece.bpe.model").write_bytes(small_sentencepiece_model.read_bytes())
    assert main(["from-fairseq", str(source), str(tmp_path / "xlmr")]) == EXIT_CORRUPT_FILE
    assert "dict.txt line 6" in capsys.readouterr().err
    assert not (tmp_path / "xlmr").exists()


def test_dictionary_that_does_not_fit_the_embedding_is_refused(tmp_path, capsys):
    source = write_release(
        tmp_path / "fairseq", fairseq_weights(), tokens=[f"t{i}" for i in range(DICT_LINES + 3)]
    )
    assert main(["from-fairseq", str(source), str(tmp_path / "xlmr")]) == EXIT_SHAPE_MISMATCH
    assert "rows" in capsys.readouterr().err


class _RunsCode:
    """Unpickling this would run a shell command."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


class _CustomRecord:
    pass


@pytest.mark.parametrize("payload", ["code", "custom class"])
def test_pickles_needing_more_than_tensors_and_containers_are_refused_unrun(tmp_path, capsys, payload):
    source = write_release(tmp_path / "fairseq", fairseq_weights())
    checkpoint = {
        "args": argparse.Namespace(**model_args()),
        "model": fairseq_state(fairseq_weights(), fused=False, prefix="encoder"),
    }
    marker = tmp_path / "was-run"
    checkpoint["extra_state"] = _RunsCode(marker) if payload == "code" else _CustomRecord()
    torch.save(checkpoint, source / "model.pt", pickle_protocol=pickle.HIGHEST_PROTOCOL)

    assert main(["from-fairseq", str(source), str(tmp_path / "xlmr")]) == EXIT_CORRUPT_FILE
    error = capsys.readouterr().err
    assert "refused" in error and ("system" in error or "_CustomRecord" in error)
    assert not marker.exists()
    assert not (tmp_path / "xlmr").exists()


def test_missing_dictionary_is_reported(tmp_path, capsys):
    source = write_release(tmp_path / "fairseq", fairseq_weights())
    (source / "dict.txt").unlink()
    assert main(["from-fairseq", str(source), str(tmp_path / "xlmr")]) == EXIT_MISSING_FILE
    assert "dict.txt" in capsys.readouterr().err


def test_truncated_model_file_is_reported_as_corrupt(tmp_path, capsys):
    source = write_release(tmp_path / "fairseq", fairseq_weights(), legacy=True)
    data = (source / "model.pt").read_bytes()
    (source / "model.pt").write_bytes(data[: len(data) // 2])
    assert main(["from-fairseq", str(source), str(tmp_path / "xlmr")]) == EXIT_CORRUPT_FILE
    assert "model.pt" in capsys.readouterr().err

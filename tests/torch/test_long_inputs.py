"""Long inputs: self-attention in query chunks (`xlmr_torch.attention_kernels`) equals the plain path.

The threshold and chunk are lowered (64 and 48) so 200-token inputs, tiny width, take the chunked
path (the last chunk shorter than the others); the plain path runs with the real threshold.
"""

from __future__ import annotations

import pytest

from tests.torch.conftest import build, token_ids

torch = pytest.importorskip("torch")
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402

from xlmr_core.modeling_utils import relative_position_index  # noqa: E402
from xlmr_torch import attention_kernels as chunking  # noqa: E402

LENGTH = 200
THRESHOLD = 64
CHUNK = 48
MAX_POSITIONS = 260
RELATIVE = ("relative_key", "relative_key_query")


def close(got, want, bound=1e-5):
    scale = max(1.0, float(want.abs().max()))
    diff = float((got - want).abs().max())
    assert diff <= bound * scale, f"max |diff| {diff} over {bound} x {scale}"


class Spy:
    """Counts chunked_attention calls, so a test cannot pass on the plain path twice."""

    def __init__(self, monkeypatch):
        self.calls = 0
        original = chunking.chunked_attention

        def counting(*args, **kwargs):
            self.calls += 1
            return original(*args, **kwargs)

        monkeypatch.setattr("xlmr_torch.attention.chunked_attention", counting)


@pytest.fixture
def chunked(monkeypatch):
    """Call `chunked(fn)`: fn's result with the lowered threshold, and the spy that saw it."""

    def run(fn):
        with monkeypatch.context() as patch:
            patch.setattr(chunking, "LONG_INPUT_THRESHOLD", THRESHOLD)
            patch.setattr(chunking, "QUERY_CHUNK", CHUNK)
            spy = Spy(patch)
            with torch.no_grad():
                result = fn()
        assert spy.calls > 0, "the chunked path did not run"
        return result

    return run


def padded_batch(lengths=(LENGTH, 150)):
    ids = token_ids(len(lengths), max(lengths))
    mask = torch.zeros_like(ids)
    for row, n in enumerate(lengths):
        mask[row, :n] = 1
    return ids.masked_fill(mask == 0, 1), mask


@pytest.mark.parametrize(
    "queries, keys, position, block",
    [(5, 20, 15, 3), (1, 7, 6, 1), (7, 7, 0, 7), (4, 30, 10, 5), (6, 6, 0, 1)],
)
def test_relative_scores_equal_the_gathered_distance_embedding(queries, keys, position, block):
    generator = torch.Generator().manual_seed(0)
    table = torch.randn(2 * 40 - 1, 8, generator=generator)
    query = torch.randn(2, 3, queries, 8, generator=generator)
    key = torch.randn(2, 3, keys, 8, generator=generator)
    # The plain path's formula: a [q, k, head_dim] gather of the table.
    index = torch.as_tensor(relative_position_index(queries, keys, 40, query_start=position)).long()
    query_term = torch.einsum("bhqd,qkd->bhqk", query, table[index])
    key_term = torch.einsum("bhkd,qkd->bhqk", key, table[index])
    close(chunking.relative_scores(query, key, position, table, 40, False, block), query_term)
    close(chunking.relative_scores(query, key, position, table, 40, True, block), query_term + key_term)


@pytest.mark.parametrize("kind", ("absolute", *RELATIVE))
def test_a_long_padded_batch_equals_the_plain_path(kind, chunked):
    model = build("XLMRobertaModel", position_embedding_type=kind, max_position_embeddings=MAX_POSITIONS)
    ids, mask = padded_batch()
    # absolute attention chunks only where the plain path materialises: attentions or a head mask
    extra = (
        {}
        if kind != "absolute"
        else {"output_attentions": True, "head_mask": torch.tensor([1.0, 0.5, 0.0, 1.0])}
    )
    with torch.no_grad():
        want = model(ids, attention_mask=mask, **extra)
    got = chunked(lambda: model(ids, attention_mask=mask, **extra))
    close(got.last_hidden_state, want.last_hidden_state)
    close(got.pooler_output, want.pooler_output)
    if extra:
        for g, w in zip(got.attentions, want.attentions):
            close(g, w)


@pytest.mark.parametrize("kind", ("absolute", *RELATIVE))
def test_a_long_decoder_with_padding_and_attentions_equals_the_plain_path(kind, chunked):
    model = build(
        "XLMRobertaForCausalLM", position_embedding_type=kind, max_position_embeddings=MAX_POSITIONS
    )
    ids, mask = padded_batch()
    encoder = torch.randn(2, 9, 32, generator=torch.Generator().manual_seed(3))
    call = dict(attention_mask=mask, encoder_hidden_states=encoder, output_attentions=True)
    with torch.no_grad():
        want = model(ids, **call)
    got = chunked(lambda: model(ids, **call))
    close(got.logits, want.logits)
    for g, w in zip(got.attentions + got.cross_attentions, want.attentions + want.cross_attentions):
        close(g, w)


@pytest.mark.parametrize("kind", ("absolute", *RELATIVE))
def test_a_long_prompt_after_a_cache_equals_the_plain_path(kind, chunked):
    """90 new queries over 120 cached positions: the chunks sit after the cache, causally."""
    model = build(
        "XLMRobertaForCausalLM", position_embedding_type=kind, max_position_embeddings=MAX_POSITIONS
    )
    ids = token_ids(2, 210)
    first, second = ids[:, :120], ids[:, 120:]
    attentions = {"output_attentions": True} if kind == "absolute" else {}

    def continued():
        past = model(first, use_cache=True).past_key_values
        return model(second, past_key_values=past, use_cache=True, **attentions)

    with torch.no_grad():
        want = continued()
    got = chunked(continued)
    close(got.logits, want.logits)
    for g, w in zip(got.past_key_values, want.past_key_values):
        for a, b in zip(g, w):
            close(a, b)
    if attentions:
        close(got.attentions[-1], want.attentions[-1])


@pytest.mark.parametrize("head", ("XLMRobertaModel", "XLMRobertaForCausalLM"))
@pytest.mark.parametrize("kind", RELATIVE)
def test_a_long_unpadded_call_equals_the_plain_unpadded_and_padded_paths(head, kind, chunked):
    model = build(head, position_embedding_type=kind, max_position_embeddings=MAX_POSITIONS)
    ids, mask = padded_batch((LENGTH, 30, 120))
    field = "last_hidden_state" if head == "XLMRobertaModel" else "logits"
    with torch.no_grad():
        plain = getattr(model(ids, attention_mask=mask, unpadded=True), field)
        padded = getattr(model(ids, attention_mask=mask), field) * mask[..., None]
    got = getattr(chunked(lambda: model(ids, attention_mask=mask, unpadded=True)), field)
    close(got, plain)
    close(got, padded)


class LargestTensor(TorchDispatchMode):
    """The most elements any op's output holds during a call."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in torch.utils._pytree.tree_leaves(out):
            if isinstance(tensor, torch.Tensor):
                self.largest = max(self.largest, tensor.numel())
        return out


@pytest.mark.parametrize("kind", RELATIVE)
@pytest.mark.parametrize("unpadded", (False, True))
def test_the_chunked_path_never_holds_length_squared(kind, unpadded, chunked):
    """Nothing beyond one chunk's `[batch, heads, chunk, chunk + L]` window scores (linear in L),
    where the plain path holds `[batch, heads, L, L]` scores and an `[L, L, head_dim]` gather."""
    model = build("XLMRobertaModel", position_embedding_type=kind, max_position_embeddings=MAX_POSITIONS)
    ids, mask = padded_batch((LENGTH, 20))  # batch 2 padded; unpadded packs 220 rows
    plain, chunk = LargestTensor(), LargestTensor()
    with torch.no_grad(), plain:
        model(ids, attention_mask=mask, unpadded=unpadded)

    def run():
        with chunk:
            return model(ids, attention_mask=mask, unpadded=unpadded)

    chunked(run)
    heads = model.config.num_attention_heads
    assert plain.largest >= heads * LENGTH * LENGTH  # the measure sees the plain path's maps
    assert chunk.largest <= 2 * heads * CHUNK * (CHUNK + LENGTH) < heads * LENGTH * LENGTH, chunk.largest


def test_an_export_traces_the_plain_path_and_serves_long_inputs(chunked):
    """Under torch.export the chunk loop is skipped (one program for every length); eager chunks."""
    from torch.export import Dim

    model = build(
        "XLMRobertaModel", position_embedding_type="relative_key", max_position_embeddings=MAX_POSITIONS
    )
    ids, mask = padded_batch()
    length = Dim("length", min=2, max=MAX_POSITIONS - 2)

    def export_and_run():
        program = torch.export.export(
            model,
            (),
            {"input_ids": ids[:, :80].clone(), "attention_mask": mask[:, :80].clone()},
            dynamic_shapes={"input_ids": {1: length}, "attention_mask": {1: length}},
            strict=False,
        )
        return program.module()(input_ids=ids, attention_mask=mask), model(ids, attention_mask=mask)

    exported, eager = chunked(export_and_run)
    close(exported.last_hidden_state, eager.last_hidden_state)


def test_the_size_guard_counts_one_query_chunk_for_long_inputs():
    """8,192 tokens, base width, relative_key, batch 2: the guard counted the whole-sequence
    `[q, k, head_dim]` gather (about 45 GiB, refused); chunked it is about 1.8 GiB."""
    from xlmr_core import XLMRobertaConfig
    from xlmr_core.call_limits import activation_bytes, check_activation_size
    from xlmr_core.unpadding import QUERY_CHUNK

    config = XLMRobertaConfig(max_position_embeddings=8194, position_embedding_type="relative_key")
    # Per token 2·3072 + 6·768 = 10752 values; one chunk: QUERY_CHUNK · 3 · 12 heads · 8192 keys.
    per_row = 8192 * 10752 + QUERY_CHUNK * 3 * 12 * 8192
    assert activation_bytes(config, 2, 8192, 8192) == 4 * 2 * per_row
    check_activation_size(config, 2, 8192)

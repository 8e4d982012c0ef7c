"""`Packing`: one pack from the mask, the heads on packed rows, one unpack at the output.

Expected layouts are written out by hand from the masks below.
"""

from __future__ import annotations

import pytest
import torch

from xlmr_core.modeling_utils import IGNORE_INDEX
from xlmr_torch.packing import Packing

from .conftest import HEADS, build
from .test_unpadded import SENTENCE_HEADS, batch_for, labels_for

# Row 0 right-padded, row 1 left-padded, row 2 empty, row 3 full.
MASK = torch.tensor([[1, 1, 0], [0, 1, 1], [0, 0, 0], [1, 1, 1]])
# The value at padded position (b, s) is 10 * b + s.
VALUES = torch.arange(4)[:, None] * 10 + torch.arange(3)[None, :]


def test_pack_takes_the_real_positions_row_major_then_zero_filler():
    packing = Packing.from_mask(MASK, budget=9)
    assert packing.budget == 9
    assert packing.pack(VALUES).tolist() == [0, 1, 11, 12, 30, 31, 32, 0, 0]


def test_without_a_budget_the_packed_length_is_the_real_token_count():
    packing = Packing.from_mask(MASK)
    assert packing.budget == 7
    assert packing.pack(VALUES).tolist() == [0, 1, 11, 12, 30, 31, 32]


def test_a_budget_beyond_the_padded_batch_is_capped():
    assert Packing.from_mask(MASK, budget=1000).budget == MASK.numel()


def test_unpack_puts_rows_back_with_zeros_at_padding_and_drops_filler():
    packing = Packing.from_mask(MASK, budget=9)
    rows = torch.tensor([5, 6, 7, 8, 1, 2, 3, 99, 99])
    assert packing.unpack(rows).tolist() == [[5, 6, 0], [0, 7, 8], [0, 0, 0], [1, 2, 3]]


def test_pack_labels_ignores_the_filler_rows():
    packing = Packing.from_mask(MASK, budget=9)
    assert packing.pack_labels(VALUES).tolist() == [0, 1, 11, 12, 30, 31, 32, IGNORE_INDEX, IGNORE_INDEX]


def test_first_tokens_read_position_zero_with_zeros_where_it_is_padding():
    packing = Packing.from_mask(MASK, budget=9)
    rows = torch.arange(1.0, 10.0)[:, None].expand(9, 2)
    first = packing.first_tokens(rows)
    assert first.shape == (4, 1, 2)
    assert first[:, 0, 0].tolist() == [1.0, 0.0, 0.0, 5.0]


def test_segments_are_the_non_empty_sequences():
    assert Packing.from_mask(MASK).segments() == [(0, 2), (2, 2), (4, 3)]


def test_a_budget_below_the_real_tokens_is_refused():
    with pytest.raises(ValueError, match="token_budget=6 is smaller than the batch's 7 real tokens"):
        Packing.from_mask(MASK, budget=6)


@pytest.mark.parametrize("head", [h for h in HEADS if h != "XLMRobertaModel"])
def test_a_head_packs_once_and_unpacks_only_its_outputs(head, monkeypatch):
    """Pack -> layers -> head -> unpack: no unpack of the encoder's rows for a head to pack again."""
    packings, unpacked = [], []
    original_init, original_unpack = Packing.__init__, Packing.unpack

    def counting_init(self, *args, **kwargs):
        packings.append(self)
        original_init(self, *args, **kwargs)

    def counting_unpack(self, x):
        unpacked.append(tuple(x.shape))
        return original_unpack(self, x)

    monkeypatch.setattr(Packing, "__init__", counting_init)
    monkeypatch.setattr(Packing, "unpack", counting_unpack)
    model = build(head)
    inputs = batch_for(head)
    with torch.no_grad():
        model(**inputs, **labels_for(head, inputs), unpadded=True)
    assert len(packings) == 1
    # Token-level heads unpack their logits once; sentence-level heads read first tokens only.
    assert not [shape for shape in unpacked if shape[-1] == model.config.hidden_size], unpacked
    assert len(unpacked) == (0 if head in SENTENCE_HEADS else 1), unpacked

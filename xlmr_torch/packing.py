"""Unpadded execution: the real tokens of a padded batch, packed once (`xlmr_core.unpadding`).

`unpadded=True` packs the batch from its mask once, runs the embeddings, every layer and
every head on the packed `[budget, ...]` rows, and unpacks once at the output.
"""

from __future__ import annotations

import torch

from xlmr_core.modeling_utils import IGNORE_INDEX
from xlmr_core.unpadding import check_budget_fits, check_contiguous_rows

from .inputs import tracing


def unpads(unpadded: bool, attention_mask) -> bool:
    """Whether a call with `unpadded=True` really packs: eager, with a mask that hides something.

    A tracer (`torch.export`, `torch.compile`, ONNX, `jit.trace`) sees no mask values, so it
    runs the padded path: correct for every mask, only without the saving.
    """
    return bool(unpadded) and attention_mask is not None and not tracing() and not bool(attention_mask.all())


class Packing:
    """Where the real tokens of a padded `[batch, seq]` batch sit in the packed rows, row-major.

    Row `i` of the batch is packed rows `starts[i] : starts[i] + lengths[i]`; rows from
    `real_tokens` up to `budget` are filler (zeros in, dropped out) that no real token attends
    to, there only when a `token_budget` asks for a fixed packed length.
    """

    def __init__(self, attention_mask: torch.Tensor, budget: int | None = None):
        self.batch_size, self.seq_length = attention_mask.shape
        self.keep = (attention_mask != 0).reshape(-1)
        self.indices = self.keep.nonzero().squeeze(-1)
        # Python ints: the per-sequence attention loop slices with them (one host sync per call).
        self.lengths = self.keep.view(self.batch_size, self.seq_length).sum(dim=1).tolist()
        self.starts = [0]
        for n in self.lengths[:-1]:
            self.starts.append(self.starts[-1] + n)
        self.real_tokens = sum(self.lengths)
        check_budget_fits(budget, self.real_tokens)
        # More than the padded batch holds saves nothing: capped, as `xlmr_core.unpadding.token_budget` does.
        self.budget = self.real_tokens if budget is None else min(int(budget), attention_mask.numel())

    @classmethod
    def from_mask(cls, attention_mask: torch.Tensor, budget: int | None = None) -> Packing:
        """The packing of `attention_mask` (each row one run of 1s); `budget` None: the real-token count."""
        check_contiguous_rows(attention_mask.detach().cpu().numpy())
        return cls(attention_mask, budget)

    def pack(self, x: torch.Tensor | None) -> torch.Tensor | None:
        """`[batch, seq, ...]` -> `[budget, ...]`: the real positions, then zero filler."""
        if x is None:
            return None
        if x.shape[0] != self.batch_size:  # position ids given as [1, seq]
            x = x.expand(self.batch_size, *x.shape[1:])
        packed = x.reshape(self.batch_size * self.seq_length, *x.shape[2:]).index_select(0, self.indices)
        filler = self.budget - self.real_tokens
        if filler:
            packed = torch.cat([packed, packed.new_zeros(filler, *packed.shape[1:])])
        return packed

    def pack_labels(self, labels: torch.Tensor) -> torch.Tensor:
        """`[batch, seq]` labels of the packed rows; filler rows get `IGNORE_INDEX`."""
        packed = self.pack(labels)
        return packed.index_fill(
            0, torch.arange(self.real_tokens, self.budget, device=packed.device), IGNORE_INDEX
        )

    def unpack(self, x: torch.Tensor) -> torch.Tensor:
        """`[budget, ...]` -> `[batch, seq, ...]` with zeros at padded positions (filler dropped)."""
        real = x[: self.real_tokens]
        flat = real.new_zeros(self.batch_size * self.seq_length, *x.shape[1:])
        return flat.index_copy(0, self.indices, real).view(self.batch_size, self.seq_length, *x.shape[1:])

    def first_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """`[budget, hidden]` -> `[batch, 1, hidden]`: position 0 of each row (zeros where it is padding)."""
        with_zero_row = torch.cat([x, x.new_zeros(1, *x.shape[1:])])
        first_is_real = self.keep.view(self.batch_size, self.seq_length)[:, 0].to(x.device)
        rows = torch.tensor(self.starts, device=x.device)
        return with_zero_row.index_select(0, rows.masked_fill(~first_is_real, self.budget))[:, None]

    def segments(self):
        """`(start, length)` of every non-empty sequence in the packed rows."""
        return [(start, n) for start, n in zip(self.starts, self.lengths) if n]

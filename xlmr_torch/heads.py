"""The task heads' own layers: the language-model head and the sentence classification head."""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

from xlmr_core import XLMRobertaConfig
from xlmr_core.modeling_utils import check_first_token

from .inputs import tracing


def classifier_dropout(config: XLMRobertaConfig) -> float:
    """The classification heads' dropout: `classifier_dropout`, else `hidden_dropout_prob`."""
    return config.hidden_dropout_prob if config.classifier_dropout is None else config.classifier_dropout


class XLMRobertaLMHead(nn.Module):
    """dense -> gelu -> LayerNorm -> vocabulary projection (weight usually tied to the embeddings)."""

    def __init__(self, config: XLMRobertaConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size)
        # One tensor under two names (`lm_head.bias`, `lm_head.decoder.bias`), as in the reference.
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))
        self.decoder.bias = self.bias

    def forward(self, features):
        return self.decoder(self.layer_norm(F.gelu(self.dense(features))))

    @contextlib.contextmanager
    def sparse_tied_lookup(self, embedding: nn.Embedding):
        """Inside it, a lookup in `embedding` gives its gradient as sparse rows when `decoder`
        shares that matrix (eager, gradients on).

        The head's own gradient of the shared matrix is dense, and autograd sums the two into
        one dense `.grad` (the same values to float32 rounding), so the lookup's dense
        `[vocab, hidden]` zeros and one full-size add are not materialised: at
        xlm-roberta-base size, 192M elements written twice less per step. Only a loss that
        never reaches this head's output would leave the matrix with a sparse gradient.
        """
        weight = embedding.weight
        use = (
            self.decoder.weight is weight
            and not embedding.sparse
            and weight.requires_grad
            and torch.is_grad_enabled()
            and not tracing()
            and type(weight.data) is torch.Tensor  # not a DTensor (FSDP2 shards)
        )
        if not use:
            yield
            return
        embedding.sparse = True
        try:
            yield
        finally:
            embedding.sparse = False


class XLMRobertaClassificationHead(nn.Module):
    """Sentence-level head on the first (`<s>`) token."""

    def __init__(self, config: XLMRobertaConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout = nn.Dropout(classifier_dropout(config))
        self.out_proj = nn.Linear(config.hidden_size, config.num_labels)

    def forward(self, features):
        """`[batch, seq, hidden]` (or `Packing.first_tokens`' `[batch, 1, hidden]`) -> `[batch, labels]`."""
        check_first_token(features.shape[1])
        x = self.dropout(features[:, 0])
        x = self.dropout(torch.tanh(self.dense(x)))
        return self.out_proj(x)

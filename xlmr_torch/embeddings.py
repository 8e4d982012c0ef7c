"""Word, position and token-type embeddings, and the fairseq position ids they read."""

from __future__ import annotations

import torch
from torch import nn

from xlmr_core import XLMRobertaConfig


def position_ids_from_input_ids(input_ids: torch.Tensor, padding_idx: int | None, past_length: int = 0):
    """Fairseq positions: real tokens count up from `padding_idx + 1`, pads stay at `padding_idx`."""
    if padding_idx is None:
        positions = torch.arange(past_length, past_length + input_ids.shape[1], device=input_ids.device)
        return positions.expand_as(input_ids)
    not_pad = input_ids.ne(padding_idx).long()
    return (torch.cumsum(not_pad, dim=1) + past_length) * not_pad + padding_idx


def position_ids_from_inputs_embeds(
    inputs_embeds: torch.Tensor, padding_idx: int | None, past_length: int = 0
):
    """Without token ids padding cannot be seen, so every position counts as a real token."""
    batch_size, seq_length = inputs_embeds.shape[:2]
    start = past_length + (0 if padding_idx is None else padding_idx + 1)
    positions = torch.arange(start, start + seq_length, device=inputs_embeds.device)
    return positions.expand(batch_size, seq_length)


class XLMRobertaEmbeddings(nn.Module):
    def __init__(self, config: XLMRobertaConfig):
        super().__init__()
        pad = config.pad_token_id
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=pad)
        # The relative kinds never read this table, but checkpoints carry it, so it exists.
        self.position_embeddings = nn.Embedding(
            config.max_position_embeddings, config.hidden_size, padding_idx=pad
        )
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.absolute_positions = config.position_embedding_type == "absolute"

    def forward(self, input_ids, token_type_ids, position_ids, inputs_embeds):
        """Any layout: `[batch, seq]` ids (or `[batch, seq, hidden]` embeds), or packed `[tokens]` rows."""
        if inputs_embeds is None:
            inputs_embeds = self.word_embeddings(input_ids)
        embeddings = inputs_embeds + self.token_type_embeddings(token_type_ids)
        if self.absolute_positions:
            embeddings = embeddings + self.position_embeddings(position_ids)
        return self.dropout(self.LayerNorm(embeddings))

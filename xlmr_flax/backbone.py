"""The assembled encoder: embeddings -> layers -> pooler, with masks, cache and packing.

Takes already-checked inputs (the wrappers in `pretrained.py` check them). With a token
budget (`unpadded=True`) it packs once from the attention mask (see `packing.py`); the
heads then run on the packed rows and unpack once.
"""

from __future__ import annotations

import jax.numpy as jnp

from xlmr_core import BaseModelOutputWithPoolingAndCrossAttentions
from xlmr_core.modeling_utils import is_static

from .attention import AttentionInputs
from .embeddings import XLMRobertaEmbeddings, position_ids_from_input_ids, position_ids_from_inputs_embeds
from .encoder import XLMRobertaEncoder
from .initialisation import Block
from .packing import Packing
from .pooler import XLMRobertaPooler


class XLMRobertaModule(Block):
    """The bare encoder (or decoder, with `config.is_decoder`), with an optional pooler.

    Takes already-checked inputs and resolved flags; the wrappers below do the checking.
    """

    add_pooling_layer: bool = True

    def setup(self):
        self.embeddings = XLMRobertaEmbeddings(self.config, self.dtype, self.param_dtype)
        self.encoder = XLMRobertaEncoder(self.config, self.dtype, self.param_dtype)
        if self.add_pooling_layer:
            self.pooler = XLMRobertaPooler(self.config, self.dtype, self.param_dtype)

    def word_embeddings(self):
        """The `[vocab, hidden]` matrix the tied LM head projects onto."""
        return self.embeddings.word_embeddings.embedding

    def __call__(
        self,
        input_ids=None,
        attention_mask=None,
        token_type_ids=None,
        position_ids=None,
        head_mask=None,
        inputs_embeds=None,
        encoder_hidden_states=None,
        encoder_attention_mask=None,
        past_key_values=None,
        use_cache: bool = False,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        deterministic: bool = True,
        cache_index=None,
        token_budget: int | None = None,
        pair_budget: int | None = None,
        keep_packed: bool = False,
    ):
        """`cache_index` (with fixed-size `past_key_values`) says how many cache slots are filled.

        `token_budget` (static, with `attention_mask`) runs unpadded: everything but the attention
        scores on the first `token_budget` real tokens, packed (see `Packing`), the attention over
        at most `pair_budget` block pairs when given. With `keep_packed`
        the call returns `(output, packing)` and `last_hidden_state` stays packed `[budget, hidden]`,
        for the heads to run on; `packing` is None on the padded path."""
        config = self.config
        given = input_ids if input_ids is not None else inputs_embeds
        batch_size, seq_length = given.shape[:2]
        past_length = 0 if past_key_values is None else past_key_values[0][0].shape[2]
        if cache_index is not None:
            past_length = cache_index  # positions continue after the filled slots
        if token_type_ids is None:
            token_type_ids = jnp.zeros((batch_size, seq_length), jnp.int32)
        if position_ids is None:
            if input_ids is not None:
                position_ids = position_ids_from_input_ids(input_ids, config.pad_token_id, past_length)
            else:
                position_ids = position_ids_from_inputs_embeds(
                    inputs_embeds, config.pad_token_id, past_length
                )

        packing = None
        if token_budget is not None:
            packing = Packing.from_mask(attention_mask, token_budget, config.is_decoder, pair_budget)
            # Ids and positions are gathered from the padded layout, so the numbers are the padded path's.
            token_type_ids = packing.pack(jnp.broadcast_to(token_type_ids, (batch_size, seq_length)))
            position_ids = packing.pack(jnp.broadcast_to(position_ids, (batch_size, seq_length)))
            input_ids = None if input_ids is None else packing.pack(input_ids)
            inputs_embeds = None if inputs_embeds is None else packing.pack(inputs_embeds)
        embedding_output = self.embeddings(
            input_ids, token_type_ids, position_ids, inputs_embeds, deterministic=deterministic
        )
        if packing is not None:
            embedding_output = packing.guard(embedding_output)
        if cache_index is None:
            attention_bias = self._self_attention_bias(attention_mask, seq_length, past_length)
        else:
            attention_bias = self._fixed_cache_bias(attention_mask, seq_length, past_key_values, cache_index)
        encoder_attention_bias = None
        if encoder_hidden_states is not None:
            encoder_hidden_states = encoder_hidden_states.astype(self.dtype)
            if encoder_attention_mask is not None:
                encoder_attention_bias = self._bias(encoder_attention_mask.astype(bool)[:, None, None, :])
        if head_mask is not None:
            head_mask = head_mask.astype(self.dtype)[:, None, :, None, None]  # [layers, 1, heads, 1, 1]
        inputs = AttentionInputs(
            attention_bias,
            encoder_hidden_states,
            encoder_attention_bias,
            output_attentions,
            packing,
            cache_index,
        )
        hidden_states, presents, all_hidden_states, attentions, cross_attentions = self.encoder(
            embedding_output,
            inputs,
            head_mask,
            past_key_values,
            use_cache,
            output_hidden_states,
            deterministic,
        )
        pooled = None
        if self.add_pooling_layer:
            pooled = self.pooler(hidden_states if packing is None else packing.first_tokens(hidden_states))
        if packing is not None:
            if all_hidden_states is not None:
                all_hidden_states = tuple(packing.unpack(h) for h in all_hidden_states)
            if not keep_packed:
                hidden_states = packing.unpack(hidden_states)
        output = BaseModelOutputWithPoolingAndCrossAttentions(
            last_hidden_state=hidden_states,
            pooler_output=pooled,
            past_key_values=presents,
            hidden_states=all_hidden_states,
            attentions=attentions,
            cross_attentions=cross_attentions,
        )
        return (output, packing) if keep_packed else output

    def _bias(self, keep):
        """Additive bias: 0 where a query may look, the dtype's minimum elsewhere."""
        return jnp.where(keep, 0.0, jnp.finfo(self.dtype).min).astype(self.dtype)

    def _self_attention_bias(self, attention_mask, seq_length, past_length):
        total_length = past_length + seq_length
        keep = None
        if attention_mask is not None:
            keep = attention_mask.astype(bool)[:, None, None, :]
        # (One new token may see every key; a symbolic length under jax.export may be one or more.)
        if self.config.is_decoder and not (is_static(seq_length) and seq_length == 1):
            causal = jnp.tril(jnp.ones((seq_length, total_length), bool), past_length)[None, None]
            keep = causal if keep is None else keep & causal
        return None if keep is None else self._bias(keep)

    def _fixed_cache_bias(self, attention_mask, seq_length, past_key_values, cache_index):
        """Causal mask over the whole buffer: query i sees slots up to cache_index + i."""
        slots = past_key_values[0][0].shape[2]
        query_positions = cache_index + jnp.arange(seq_length)[:, None]
        keep = (jnp.arange(slots)[None, :] <= query_positions)[None, None]
        if attention_mask is not None:
            keep = keep & attention_mask.astype(bool)[:, None, None, :]
        return self._bias(keep)

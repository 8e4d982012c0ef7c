"""`encode`: sentence embeddings from the Flax base model.

The batching, pooling and defaults are `xlmr_core.embeddings.encode_texts`, shared by the
three frameworks; this module only runs the (jitted) encoder on each batch.
"""

from __future__ import annotations

import jax
import numpy as np

from xlmr_core.embeddings import (
    DEFAULT_BATCH_SIZE,
    SentenceTransformersSettings,
    encode_texts,
    encode_token_budget,
)
from xlmr_core.unpadding import check_unpadded_arguments


class EncodingMixin:
    """`encode(texts, tokenizer, ...)` for `FlaxXLMRobertaModel`."""

    # What the checkpoint's sentence-transformers files say (set by `from_pretrained`); None: no files.
    sentence_transformers: SentenceTransformersSettings | None = None

    def _encode_step(self):
        """The jitted forward pass `(params, input_ids, attention_mask, budget) -> last_hidden_state`,
        made once; `budget` (static) is the unpadded token budget, or None for the padded path."""
        step = self.__dict__.get("_jitted_encode_step")
        if step is None:

            def forward(params, ids, mask, budget):
                unpadded = budget is not None
                return self(
                    ids, mask, params=params, unpadded=unpadded, token_budget=budget
                ).last_hidden_state

            step = jax.jit(forward, static_argnums=3)
            self._jitted_encode_step = step
        return step

    def encode(
        self,
        texts,
        tokenizer,
        pooling: str | None = None,
        normalize: bool | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        max_length: int | None = None,
        show_progress_bar: bool | None = None,
        unpadded: bool = True,
    ) -> np.ndarray:
        """Sentence embeddings of `texts`, float32 numpy `[len(texts), hidden]` (`[hidden]` for one string).

        `pooling` is "mean" (over the attention mask), "cls" or "max"; `normalize` divides each
        embedding by its L2 norm; texts are truncated at `max_length` tokens. Unset, these follow
        the directory's sentence-transformers files when it had them, else "mean", True and 512.
        Texts are batched longest first and the result is in input order; `show_progress_bar`
        (None: on a terminal, for more than a few batches) shows a tqdm bar. The forward pass is
        jitted once per model and reused by every call; batches are padded to `batch_size` rows
        and to one of ten lengths up to 512 (`xlmr_core.embeddings.encode_length`), so few
        programs are compiled. `unpadded=True` (the default) runs a batch that is at most half
        real tokens on those only, packed to a quarter step of the batch (`encode_token_budget`:
        two budgets), and fuller batches padded, so at most three programs per length; the
        embeddings are the padded path's to float32 rounding.
        """
        check_unpadded_arguments(unpadded, None)
        step = self._encode_step()

        def token_embeddings(input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
            real, capacity = int(np.count_nonzero(attention_mask)), attention_mask.size
            # The budget is decided here, from the concrete mask: inside jit the mask is traced.
            # Coarse on purpose: each budget is a compilation, which costs more than the padding
            # it saves on a sorted batch (most are over half full: padded).
            budget = encode_token_budget(real, capacity) if unpadded else None
            hidden = step(self.params, input_ids.astype(np.int32), attention_mask.astype(np.int32), budget)
            return np.asarray(hidden, dtype=np.float32)

        return encode_texts(
            texts,
            tokenizer,
            token_embeddings,
            self.config,
            self.sentence_transformers,
            pooling=pooling,
            normalize=normalize,
            batch_size=batch_size,
            max_length=max_length,
            show_progress_bar=show_progress_bar,
            fixed_shapes=True,
        )

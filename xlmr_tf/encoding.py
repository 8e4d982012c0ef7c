"""`encode`: sentence embeddings from the Keras base model.

The batching, pooling and defaults are `xlmr_core.embeddings.encode_texts`, shared by the
three frameworks; this module only runs the encoder on each batch.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from xlmr_core.embeddings import DEFAULT_BATCH_SIZE, SentenceTransformersSettings, encode_texts
from xlmr_core.unpadding import check_unpadded_arguments


class EncodingMixin:
    """`encode(texts, tokenizer, ...)` for `TFXLMRobertaModel`."""

    # What the checkpoint's sentence-transformers files say (set by `from_pretrained`); None: no
    # files. A plain frozen dataclass, which Keras does not track (it is not part of get_config).
    sentence_transformers: SentenceTransformersSettings | None = None

    def _encode_graph(self, unpadded: bool):
        """The forward pass as one `tf.function` over `[None, None]` int32 ids and mask, made once
        per model and `unpadded` and reused by every call: traced once, whatever the shapes.

        A graph rather than eager ops: eager dispatch costs a third of the time at base size.
        Unpadded, the traced mask packs to its run-time token count (`Packing`, no XLA)."""
        graphs = self.__dict__.setdefault("_encode_graphs", {})  # outside Keras' attribute tracking
        if unpadded not in graphs:
            traces = self.__dict__.setdefault("_encode_traces", {})

            def forward(input_ids, attention_mask):
                traces[unpadded] = traces.get(unpadded, 0) + 1  # runs once per trace
                inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
                return self(inputs, training=False, unpadded=unpadded).last_hidden_state

            spec = tf.TensorSpec([None, None], tf.int32)
            graphs[unpadded] = tf.function(forward, input_signature=[spec, spec], autograph=False)
        return graphs[unpadded]

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
        (None: on a terminal, for more than a few batches) shows a tqdm bar. Dropout is off; the
        forward pass is one `tf.function`, traced once per model and reused by every call.
        `unpadded` (default) runs each batch on its real tokens only (`unpadded=True` of the
        model call); the embeddings are the padded run's to float32 rounding.
        """

        check_unpadded_arguments(unpadded, None)
        graph = self._encode_graph(bool(unpadded))

        def token_embeddings(input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
            hidden = graph(input_ids.astype(np.int32), attention_mask.astype(np.int32))
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
        )

"""TensorFlow / Keras 3 quick start: load a checkpoint, predict, and `fit` a classifier.

Nothing is downloaded: the script trains a tiny SentencePiece vocabulary on a few
multilingual sentences, saves a small random model in the shared checkpoint format,
loads it back the way you would load a published checkpoint directory, fills a mask,
and fine-tunes a sequence classifier with `model.compile` + `model.fit`.

    python examples/tf_quickstart.py [--output DIR]
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import sentencepiece  # noqa: E402
import tensorflow as tf  # noqa: E402

from xlmr_core import XLMRobertaConfig, XLMRobertaTokenizer  # noqa: E402
from xlmr_tf import TFXLMRobertaForMaskedLM, TFXLMRobertaForSequenceClassification  # noqa: E402

SENTENCES = [
    ("The weather is lovely today.", 1),
    ("I really enjoyed this film.", 1),
    ("Das Essen war ausgezeichnet.", 1),
    ("C'est une excellente nouvelle !", 1),
    ("Me encanta este libro.", 1),
    ("The service was terrible.", 0),
    ("I did not like the ending at all.", 0),
    ("Das war eine schlechte Idee.", 0),
    ("C'est vraiment décevant.", 0),
    ("No me gusta nada esta película.", 0),
]


def build_checkpoint(directory: Path) -> None:
    """Write a small random masked-LM checkpoint with its own vocabulary into `directory`."""
    model_file = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter([text for text, _ in SENTENCES] * 20),
        model_writer=model_file,
        vocab_size=70,
        model_type="unigram",
        normalization_rule_name="nmt_nfkc",
        minloglevel=2,
    )
    directory.mkdir(parents=True, exist_ok=True)
    vocab_file = directory / "sentencepiece.bpe.model"
    vocab_file.write_bytes(model_file.getvalue())
    tokenizer = XLMRobertaTokenizer(vocab_file=str(vocab_file))
    config = XLMRobertaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        max_position_embeddings=66,
        type_vocab_size=1,
        layer_norm_eps=1e-5,
    )
    keras.utils.set_random_seed(0)
    TFXLMRobertaForMaskedLM(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)  # the vocabulary, tokenizer.json and settings


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--output", type=Path, help="where to write the checkpoint (default: a temporary folder)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        directory = args.output or Path(scratch) / "xlmr-tiny"
        build_checkpoint(directory)
        print(f"checkpoint: {directory} ({', '.join(sorted(p.name for p in directory.iterdir()))})")

        # 1. Load a checkpoint directory and run the masked-LM head on a tokenizer's dict.
        tokenizer = XLMRobertaTokenizer.from_pretrained(directory)
        model = TFXLMRobertaForMaskedLM.from_pretrained(directory)
        batch = tokenizer(
            [f"Das Essen war {tokenizer.mask_token}.", f"I really {tokenizer.mask_token} this film."],
            padding=True,
            return_tensors="tf",
        )
        logits = model(batch).logits
        masked = batch["input_ids"] == tokenizer.mask_token_id
        guesses = tokenizer.convert_ids_to_tokens(tf.argmax(logits[masked], axis=-1).numpy().tolist())
        print(f"masked-LM logits {tuple(logits.shape)}; (untrained) guesses for <mask>: {guesses}")

        # 2. Fine-tune a classifier on the same checkpoint with Keras (the head starts random).
        #    The batches carry `labels`, so `fit` trains with the model's own loss.
        classifier = TFXLMRobertaForSequenceClassification.from_pretrained(directory, num_labels=2)
        data = dict(tokenizer([t for t, _ in SENTENCES], padding=True, return_tensors="np"))
        labels = np.array([label for _, label in SENTENCES], dtype=np.int32)
        dataset = tf.data.Dataset.from_tensor_slices({**data, "labels": labels}).shuffle(10, seed=0).batch(5)
        classifier.compile(optimizer=keras.optimizers.AdamW(3e-3), jit_compile=True)
        history = classifier.fit(dataset, epochs=15, shuffle=False, verbose=0)
        losses = history.history["loss"]
        print(
            f"fine-tuning loss: {losses[0]:.3f} -> {losses[-1]:.3f} after {len(losses)} epochs of model.fit"
        )

        classifier.save_pretrained(directory / "classifier")
        reloaded = TFXLMRobertaForSequenceClassification.from_pretrained(directory / "classifier")
        predictions = np.argmax(reloaded.predict(data, verbose=0)["logits"], axis=-1)
        print(f"training accuracy after reload: {np.mean(predictions == labels):.0%}")


if __name__ == "__main__":
    main()

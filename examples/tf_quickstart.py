"""TensorFlow / Keras 3 quick start: load a checkpoint directory, predict, `fit` a classifier.

Nothing is downloaded: the checkpoint is the one bundled with xlmr (`xlmr-tiny`, a small
pretrained XLM-RoBERTa); any checkpoint directory, xlm-roberta-base included, loads the
same way. The classifier is fine-tuned with `model.compile` + `model.fit`, saved in the
shared format and loaded back.

    python examples/tf_quickstart.py [--checkpoint DIR] [--output DIR]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from xlmr_core import XLMRobertaTokenizer  # noqa: E402
from xlmr_core.pretrained import bundled_checkpoint  # noqa: E402
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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoint", help="checkpoint directory (default: the bundled xlmr-tiny)")
    parser.add_argument(
        "--output", type=Path, help="where to save the classifier (default: a temporary folder)"
    )
    args = parser.parse_args()
    # After xlmr_tf, which imports TensorFlow without its start-up noise.
    import keras
    import tensorflow as tf

    directory = args.checkpoint or bundled_checkpoint()
    with tempfile.TemporaryDirectory() as scratch:
        output = args.output or Path(scratch) / "classifier"
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
        print(f"masked-LM logits {tuple(logits.shape)}; guesses for <mask>: {guesses}")

        # 2. Fine-tune a classifier on the same checkpoint with Keras (the head starts random).
        #    The batches carry `labels`, so `fit` trains with the model's own loss.
        keras.utils.set_random_seed(0)  # the new head's initialisation, dropout and shuffling
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

        classifier.save_pretrained(output)
        reloaded = TFXLMRobertaForSequenceClassification.from_pretrained(output)
        predictions = np.argmax(reloaded.predict(data, verbose=0)["logits"], axis=-1)
        print(f"training accuracy after reload: {np.mean(predictions == labels):.0%}")


if __name__ == "__main__":
    main()

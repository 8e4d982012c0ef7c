"""PyTorch quick start: load a checkpoint directory, fill masks, fine-tune a classifier.

Nothing is downloaded: the checkpoint is the one bundled with xlmr (`xlmr-tiny`, a small
pretrained XLM-RoBERTa); any checkpoint directory, xlm-roberta-base included, loads the
same way. The fine-tuned classifier is saved in the shared format and loaded back.

    python examples/torch_quickstart.py [--checkpoint DIR] [--output DIR]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from xlmr_core import XLMRobertaTokenizer
from xlmr_core.pretrained import bundled_checkpoint
from xlmr_torch import XLMRobertaForMaskedLM, XLMRobertaForSequenceClassification

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
    directory = args.checkpoint or bundled_checkpoint()
    with tempfile.TemporaryDirectory() as scratch:
        output = args.output or Path(scratch) / "classifier"
        # 1. Load a checkpoint directory and run the masked-LM head.
        tokenizer = XLMRobertaTokenizer.from_pretrained(directory)
        model = XLMRobertaForMaskedLM.from_pretrained(directory).eval()
        batch = tokenizer(
            [f"Das Essen war {tokenizer.mask_token}.", f"I really {tokenizer.mask_token} this film."],
            padding=True,
            return_tensors="pt",
        )
        with torch.no_grad():
            logits = model(**batch).logits
        masked = batch["input_ids"] == tokenizer.mask_token_id
        guesses = tokenizer.convert_ids_to_tokens(logits[masked].argmax(-1).tolist())
        print(f"masked-LM logits {tuple(logits.shape)}; guesses for <mask>: {guesses}")

        # 2. Fine-tune a classifier on the same checkpoint (the head starts random).
        torch.manual_seed(0)  # the new head's initialisation, and dropout
        classifier = XLMRobertaForSequenceClassification.from_pretrained(directory, num_labels=2)
        data = tokenizer([t for t, _ in SENTENCES], padding=True, return_tensors="pt")
        labels = torch.tensor([label for _, label in SENTENCES])
        optimizer = torch.optim.AdamW(classifier.parameters(), lr=3e-3)
        classifier.train()
        losses = []
        for _ in range(30):
            optimizer.zero_grad()
            loss = classifier(**data, labels=labels).loss
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        print(f"fine-tuning loss: {losses[0]:.3f} -> {losses[-1]:.3f} after {len(losses)} AdamW steps")
        classifier.save_pretrained(output)
        reloaded = XLMRobertaForSequenceClassification.from_pretrained(output).eval()
        with torch.no_grad():
            predictions = reloaded(**data).logits.argmax(-1)
        print(f"training accuracy after reload: {(predictions == labels).float().mean().item():.0%}")


if __name__ == "__main__":
    main()

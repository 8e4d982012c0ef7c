"""PyTorch quick start: build a small XLM-RoBERTa checkpoint, load it, predict, fine-tune.

Nothing is downloaded: the script trains a tiny SentencePiece vocabulary on a few
multilingual sentences, saves a small random model in the shared checkpoint format,
loads it back the way you would load a published checkpoint directory, fills a mask,
and fine-tunes a sequence classifier for a few steps.

    python examples/torch_quickstart.py [--output DIR]
"""

from __future__ import annotations

import argparse
import io
import tempfile
from pathlib import Path

import sentencepiece
import torch

from xlmr_core import XLMRobertaConfig, XLMRobertaTokenizer
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
    vocab_file = directory / "sentencepiece.bpe.model"
    directory.mkdir(parents=True, exist_ok=True)
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
    torch.manual_seed(0)
    XLMRobertaForMaskedLM(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)


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
        print(f"masked-LM logits {tuple(logits.shape)}; (untrained) guesses for <mask>: {guesses}")

        # 2. Fine-tune a classifier on the same checkpoint (the head starts random).
        classifier = XLMRobertaForSequenceClassification.from_pretrained(directory, num_labels=2)
        data = tokenizer([t for t, _ in SENTENCES], padding=True, return_tensors="pt")
        labels = torch.tensor([label for _, label in SENTENCES])
        optimizer = torch.optim.AdamW(classifier.parameters(), lr=3e-3)
        classifier.train()
        torch.manual_seed(0)
        losses = []
        for _ in range(30):
            optimizer.zero_grad()
            loss = classifier(**data, labels=labels).loss
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        print(f"fine-tuning loss: {losses[0]:.3f} -> {losses[-1]:.3f} after {len(losses)} AdamW steps")
        classifier.save_pretrained(directory / "classifier")
        reloaded = XLMRobertaForSequenceClassification.from_pretrained(directory / "classifier").eval()
        with torch.no_grad():
            predictions = reloaded(**data).logits.argmax(-1)
        print(f"training accuracy after reload: {(predictions == labels).float().mean().item():.0%}")


if __name__ == "__main__":
    main()

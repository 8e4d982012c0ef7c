"""Rebuild the bundled tiny XLM-RoBERTa (`xlmr_core/data/xlmr-tiny`) from nothing.

Corpus: the multilingual dialogue texts of the `chatterbot-corpus` package, version
1.3.3 (BSD 3-Clause licence, https://github.com/gunthercox/chatterbot-corpus; 28 language
folders of YAML conversations). Every distinct utterance is one training sentence. One
sentence in twenty, chosen by a hash of its text, is held out for evaluation and never
trained on; the held-out sentences are written beside the checkpoint.

Steps: train a SentencePiece unigram vocabulary on the training sentences, pretrain an
`xlmr_torch.XLMRobertaForMaskedLM` with masked language modelling (15% of tokens, 80% of
them replaced by <mask>, 10% by a random token, 10% kept; AdamW with warm-up then linear
decay), then score fill-mask on the held-out sentences against a unigram-frequency
baseline and write the checkpoint with a model card holding those figures.

    nox -s pretrain                       # installs chatterbot-corpus and runs this script
    python scripts/pretrain_tiny.py [--output DIR] [--epochs N] [--threads N]

Runs are repeatable: the same versions, seed and thread count give the same weights.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import io
import json
import math
import platform
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import sentencepiece
import torch

from xlmr_core import XLMRobertaConfig, XLMRobertaTokenizer
from xlmr_core._atomic import staged_directory
from xlmr_core.fill_mask import masked_evaluation_set, masked_token_accuracy, unigram_baseline_accuracy
from xlmr_core.modeling_utils import IGNORE_INDEX
from xlmr_core.pretrained import BUNDLED_CHECKPOINT, HELDOUT_FILE
from xlmr_torch import XLMRobertaForMaskedLM

CORPUS_PACKAGE = "chatterbot-corpus"
CORPUS_VERSION = "1.3.3"
HELDOUT_ONE_IN = 20
VOCAB_SIZE = 4000
MAX_TOKENS = 64  # sentences are short; longer ones are cut, <s> and </s> included
SEED = 0


def model_config(vocab_size: int) -> XLMRobertaConfig:
    """The bundled model's shape: small enough for a few MB, deep enough to use context."""
    return XLMRobertaConfig(
        vocab_size=vocab_size,
        hidden_size=128,
        num_hidden_layers=3,
        num_attention_heads=4,
        intermediate_size=512,
        max_position_embeddings=MAX_TOKENS + 2,  # positions start after the padding id
        type_vocab_size=1,
        layer_norm_eps=1e-5,
        hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.1,
    )


# ---------------------------------------------------------------------------- corpus


def load_corpus() -> list[tuple[str, str]]:
    """Every distinct utterance of the corpus as (language, text), in a fixed order."""
    try:
        import chatterbot_corpus
        import yaml
    except ImportError as error:
        raise SystemExit(
            f"{error}: install the corpus first: pip install {CORPUS_PACKAGE}=={CORPUS_VERSION} pyyaml"
        ) from error
    from importlib.metadata import version

    if version(CORPUS_PACKAGE) != CORPUS_VERSION:
        print(
            f"note: {CORPUS_PACKAGE} {version(CORPUS_PACKAGE)} is installed; "
            f"the bundled model used {CORPUS_VERSION}"
        )

    def utterances(node):
        if isinstance(node, list):
            for item in node:
                yield from utterances(item)
        elif node is not None:
            yield " ".join(str(node).split())

    root = Path(chatterbot_corpus.__file__).parent / "data"
    seen, sentences = set(), []
    for language_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for path in sorted(language_dir.glob("*.yml")):
            document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            for text in utterances(document.get("conversations")):
                if text and text not in seen:
                    seen.add(text)
                    sentences.append((language_dir.name, text))
    return sentences


def is_heldout(text: str) -> bool:
    """A stable split: it depends on the text alone, not on order or seed."""
    return int(hashlib.sha256(text.encode("utf-8")).hexdigest(), 16) % HELDOUT_ONE_IN == 0


# ---------------------------------------------------------------------------- vocabulary


def train_vocabulary(texts: list[str], path: Path) -> XLMRobertaTokenizer:
    """A SentencePiece unigram model in XLM-R's layout, wrapped in our tokenizer."""
    model_file = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(texts),
        model_writer=model_file,
        vocab_size=VOCAB_SIZE,
        model_type="unigram",
        character_coverage=0.9995,  # the CJK scripts have long tails of rare characters
        normalization_rule_name="nmt_nfkc",
        num_threads=1,  # one thread keeps the vocabulary identical run to run
        minloglevel=2,
    )
    path.write_bytes(model_file.getvalue())
    return XLMRobertaTokenizer(vocab_file=str(path))


# ---------------------------------------------------------------------------- training


def length_batches(encoded: list[list[int]], batch_size: int, rng: np.random.Generator) -> list[list[int]]:
    """Indices grouped by similar length (little padding), batches in random order."""
    order = sorted(rng.permutation(len(encoded)), key=lambda i: len(encoded[i]))
    batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def pad(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    length = max(len(row) for row in rows)
    ids = torch.full((len(rows), length), pad_id, dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row)
    return ids, (ids != pad_id).long()


def mask_for_training(ids: torch.Tensor, special: torch.Tensor, tokenizer, generator) -> tuple:
    """BERT-style masking: 15% of ordinary tokens are predicted; 80/10/10 mask/random/keep."""
    candidates = ~torch.isin(ids, special)
    chosen = (torch.rand(ids.shape, generator=generator) < 0.15) & candidates
    # Every sentence predicts at least one token, so short ones still teach something.
    scores = torch.rand(ids.shape, generator=generator).masked_fill(~candidates, -1.0)
    chosen |= (scores == scores.max(dim=1, keepdim=True).values) & candidates
    labels = ids.masked_fill(~chosen, IGNORE_INDEX)
    roll = torch.rand(ids.shape, generator=generator)
    inputs = ids.clone()
    inputs[chosen & (roll < 0.8)] = tokenizer.mask_token_id
    random_ids = torch.randint(len(special), len(tokenizer) - 1, ids.shape, generator=generator)
    replace = chosen & (roll >= 0.8) & (roll < 0.9)
    inputs[replace] = random_ids[replace]
    return inputs, labels


def pretrain(model, tokenizer, encoded, epochs: int, batch_size: int, learning_rate: float, log) -> None:
    """Masked-LM pretraining with our torch model and a plain AdamW loop."""
    rng = np.random.default_rng(SEED)
    generator = torch.Generator().manual_seed(SEED)
    special = torch.tensor(sorted(tokenizer.all_special_ids))
    steps_per_epoch = math.ceil(len(encoded) / batch_size)
    total_steps = epochs * steps_per_epoch
    warmup = max(1, total_steps // 20)
    # Biases and the encoder's `LayerNorm`s are exempt from weight decay; the LM head's
    # `layer_norm` is not (the bundled weights were trained so, and rebuild byte for byte).
    exempt = {n for n, _ in model.named_parameters() if n.endswith("bias") or "LayerNorm" in n}
    no_decay = [p for n, p in model.named_parameters() if n in exempt]
    decay = [p for n, p in model.named_parameters() if n not in exempt]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}],
        lr=learning_rate,
        betas=(0.9, 0.98),
        eps=1e-6,
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: min((step + 1) / warmup, max(0.0, (total_steps - step) / (total_steps - warmup))),
    )
    model.train()
    step, start = 0, time.perf_counter()
    for epoch in range(epochs):
        losses = []
        for batch in length_batches(encoded, batch_size, rng):
            ids, attention_mask = pad([encoded[i] for i in batch], tokenizer.pad_token_id)
            inputs, labels = mask_for_training(ids, special, tokenizer, generator)
            loss = model(
                inputs, attention_mask=attention_mask, labels=labels, labelled_positions_only=True
            ).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            losses.append(loss.item())
            step += 1
        log(
            f"epoch {epoch + 1}/{epochs}: step {step}/{total_steps}, "
            f"mean loss {np.mean(losses):.3f}, {time.perf_counter() - start:.0f} s"
        )
    model.eval()


# ---------------------------------------------------------------------------- evaluation


def evaluate(model, tokenizer, heldout: list[tuple[str, str]], train_counts: Counter) -> dict:
    """Masked-token accuracy of the model and of the unigram baseline, overall and per language."""

    def score(pairs):
        evaluation = masked_evaluation_set(
            tokenizer, [text for _, text in pairs], seed=SEED, max_length=MAX_TOKENS
        )
        with torch.inference_mode():
            logits = model(
                torch.from_numpy(evaluation.input_ids),
                attention_mask=torch.from_numpy(evaluation.attention_mask),
            ).logits.numpy()
        return {
            "sentences": len(pairs),
            "masked_tokens": evaluation.n_masked,
            "model_accuracy": masked_token_accuracy(logits, evaluation.labels),
            "unigram_accuracy": unigram_baseline_accuracy(evaluation.labels, train_counts),
        }

    languages = sorted({language for language, _ in heldout})
    return {
        "all": score(heldout),
        "per_language": {lang: score([p for p in heldout if p[0] == lang]) for lang in languages},
    }


# ---------------------------------------------------------------------------- the model card


def model_card(config, n_params, n_train, n_heldout, languages, results, seconds, args) -> str:
    overall = results["all"]
    rows = "\n".join(
        f"| {lang} | {r['sentences']} | {r['masked_tokens']} "
        f"| {r['model_accuracy']:.3f} | {r['unigram_accuracy']:.3f} |"
        for lang, r in results["per_language"].items()
    )
    return f"""# xlmr-tiny: the checkpoint bundled with xlmr

A small XLM-RoBERTa ({config.num_hidden_layers} layers, hidden size {config.hidden_size},
{config.num_attention_heads} heads, {config.vocab_size} tokens, {n_params:,} parameters, float32),
pretrained by this project with masked language modelling. It exists so that `xlmr-convert
verify` and the fill-mask examples have a real, trained model to run out of the box; it knows
only the short dialogue sentences it was trained on. It is not a substitute for
xlm-roberta-base.

- **Corpus**: `{CORPUS_PACKAGE}` {CORPUS_VERSION} (https://github.com/gunthercox/chatterbot-corpus),
  BSD 3-Clause licence. {n_train:,} distinct utterances for training and {n_heldout:,} held out
  (one in {HELDOUT_ONE_IN}, by a hash of the text), in {len(languages)} languages.
- **Vocabulary**: SentencePiece unigram, trained on the training sentences only.
- **Training**: `scripts/pretrain_tiny.py` with `xlmr_torch.XLMRobertaForMaskedLM`; {args.epochs}
  epochs, batch {args.batch_size} sentences, AdamW (peak learning rate {args.learning_rate}, warm-up
  then linear decay), 15% masking (80/10/10), at most {MAX_TOKENS} tokens per sentence, seed {SEED};
  {seconds / 60:.1f} minutes on {args.threads} CPU threads ({platform.processor() or platform.machine()}),
  torch {torch.__version__}, {datetime.date.today().isoformat()}.
- **Held-out fill-mask** (`heldout.tsv`, 15% of each sentence's tokens masked, at least one, seed
  {SEED}): the model predicts the masked token (arg-max) **{overall["model_accuracy"]:.1%}** of the time
  over {overall["masked_tokens"]:,} masked tokens; the unigram-frequency baseline (always the training
  set's most frequent token) gets **{overall["unigram_accuracy"]:.1%}**.

| language | held-out sentences | masked tokens | model accuracy | unigram accuracy |
|---|---|---|---|---|
{rows}
"""


# ---------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--output", type=Path, default=BUNDLED_CHECKPOINT, help="default: %(default)s")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (the weights depend on it)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(SEED)
    start = time.perf_counter()

    sentences = load_corpus()
    train = [(lang, text) for lang, text in sentences if not is_heldout(text)]
    heldout = [(lang, text) for lang, text in sentences if is_heldout(text)]
    languages = sorted({lang for lang, _ in sentences})
    print(f"corpus: {len(sentences)} utterances in {len(languages)} languages; {len(heldout)} held out")

    with tempfile.TemporaryDirectory() as scratch:
        tokenizer = train_vocabulary([text for _, text in train], Path(scratch) / "sentencepiece.bpe.model")
        encoded = [tokenizer.encode(text, truncation=True, max_length=MAX_TOKENS) for _, text in train]
        special = set(tokenizer.all_special_ids)
        train_counts = Counter(t for ids in encoded for t in ids if t not in special)
        config = model_config(len(tokenizer))
        model = XLMRobertaForMaskedLM(config)
        n_params = sum(p.numel() for p in model.parameters())
        print(f"model: {n_params:,} parameters, vocabulary {len(tokenizer)}")
        pretrain(model, tokenizer, encoded, args.epochs, args.batch_size, args.learning_rate, print)
        results = evaluate(model, tokenizer, heldout, train_counts)
        seconds = time.perf_counter() - start
        overall = results["all"]
        print(
            f"held-out masked-token accuracy: model {overall['model_accuracy']:.3f}, "
            f"unigram baseline {overall['unigram_accuracy']:.3f} ({overall['masked_tokens']} tokens)"
        )
        with staged_directory(args.output) as staging:
            model.save_pretrained(staging)
            tokenizer.save_pretrained(staging)
            (staging / HELDOUT_FILE).write_text(
                "".join(f"{lang}\t{text}\n" for lang, text in heldout), encoding="utf-8"
            )
            (staging / "README.md").write_text(
                model_card(config, n_params, len(train), len(heldout), languages, results, seconds, args),
                encoding="utf-8",
            )
            (staging / "evaluation.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.output} in {seconds / 60:.1f} min")


if __name__ == "__main__":
    main()

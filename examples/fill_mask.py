"""Fill-mask with the bundled checkpoint, in every installed framework.

The same tokenised batch goes through `XLMRobertaForMaskedLM` (PyTorch),
`TFXLMRobertaForMaskedLM` (Keras 3) and `FlaxXLMRobertaForMaskedLM` (JAX); each prints
its top guesses for every <mask>, and the last line says whether they agree.

    python examples/fill_mask.py [--checkpoint DIR] [--frameworks torch tf flax] [--top-k 3]

The bundled model is tiny and knows only short dialogue sentences (see its README.md in
`xlmr_core/data/xlmr-tiny`); with a real checkpoint directory the same code serves any size.
"""

from __future__ import annotations

import argparse
import importlib.util
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's start-up logging

from xlmr_core import XLMRobertaTokenizerFast  # noqa: E402
from xlmr_core.fill_mask import top_predictions  # noqa: E402
from xlmr_core.pretrained import bundled_checkpoint  # noqa: E402

SENTENCES = [
    "Hello, how are <mask>?",
    "I am a <mask>.",
    "Je suis un <mask>.",
    "Io sono un <mask>.",
    "Hoe gaat het <mask>?",
    "你好<mask>?",
    "あなたの名前は<mask>ですか？",
]


def torch_logits(directory, tokenizer, texts):
    import torch

    from xlmr_torch import XLMRobertaForMaskedLM

    model = XLMRobertaForMaskedLM.from_pretrained(directory).eval()
    with torch.no_grad():
        return model(**tokenizer(texts, padding=True, return_tensors="pt")).logits.numpy()


def tf_logits(directory, tokenizer, texts):
    from xlmr_tf import TFXLMRobertaForMaskedLM

    model = TFXLMRobertaForMaskedLM.from_pretrained(directory)
    return model(tokenizer(texts, padding=True, return_tensors="tf"), training=False).logits.numpy()


def flax_logits(directory, tokenizer, texts):
    from xlmr_flax import FlaxXLMRobertaForMaskedLM

    model = FlaxXLMRobertaForMaskedLM.from_pretrained(directory)
    return model(**tokenizer(texts, padding=True, return_tensors="jax")).logits


FRAMEWORKS = {
    "torch": ("torch", torch_logits),
    "tf": ("tensorflow", tf_logits),
    "flax": ("flax", flax_logits),
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoint", help="checkpoint directory (default: the bundled xlmr-tiny)")
    parser.add_argument("--frameworks", nargs="+", choices=list(FRAMEWORKS), default=list(FRAMEWORKS))
    parser.add_argument("--top-k", type=int, default=3)
    args = parser.parse_args()
    directory = args.checkpoint or bundled_checkpoint()
    tokenizer = XLMRobertaTokenizerFast.from_pretrained(directory)
    input_ids = tokenizer(SENTENCES, padding=True, return_tensors="np")["input_ids"]

    best_guesses = {}
    for name in args.frameworks:
        module, logits_of = FRAMEWORKS[name]
        if importlib.util.find_spec(module) is None:
            print(f"\n{name}: skipped, {module} is not installed (pip install 'xlmr[{name}]')")
            continue
        logits = logits_of(directory, tokenizer, SENTENCES)
        predictions = top_predictions(tokenizer, input_ids, logits, top_k=args.top_k)
        print(f"\n{name}:")
        for text, masks in zip(SENTENCES, predictions):
            guesses = "  ".join(f"{token!r} {p:.2f}" for token, p in masks[0])
            print(f"  {text:<34} {guesses}")
        best_guesses[name] = [[guesses[0][0] for guesses in masks] for masks in predictions]

    if len(best_guesses) > 1:
        first, *others = best_guesses.values()
        same = all(other == first for other in others)
        print(f"\ntop guesses {'identical' if same else 'DIFFER'} across {', '.join(best_guesses)}")


if __name__ == "__main__":
    main()

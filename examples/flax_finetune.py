"""A tour of `xlmr_flax.training`'s jitted train step on a small synthetic task: watch the loss fall.

What this adds to `examples/finetune.py --framework flax` (which fine-tunes your JSON-lines data,
task logic in `xlmr_core.finetuning`): the bare optax step, with gradient accumulation, in a
dozen lines to copy. It reads no data files: for real data use `finetune.py`.

The task: does the sentence contain token 7? A small randomly initialised model learns it
in a few dozen steps on CPU. Pass a checkpoint directory to start from real weights:

    python examples/flax_finetune.py [checkpoint_dir]
"""

from __future__ import annotations

import sys

import numpy as np

from xlmr_core import XLMRobertaConfig
from xlmr_flax import FlaxXLMRobertaForSequenceClassification
from xlmr_flax.training import create_optimizer, create_train_state, make_eval_step, make_train_step


def synthetic_batches(config, num_batches, batch_size=16, length=12, seed=0):
    rng = np.random.default_rng(seed)
    for _ in range(num_batches):
        input_ids = rng.integers(3, config.vocab_size, size=(batch_size, length))
        input_ids[:, 0], input_ids[:, -1] = config.bos_token_id, config.eos_token_id
        input_ids[input_ids == 7] = 8
        labels = rng.integers(0, 2, size=batch_size)
        where = rng.integers(1, length - 1, size=batch_size)
        input_ids[labels == 1, where[labels == 1]] = 7
        yield {"input_ids": input_ids, "attention_mask": np.ones_like(input_ids), "labels": labels}


def main(directory=None, num_steps=60):
    if directory is None:
        config = XLMRobertaConfig(
            vocab_size=100,
            hidden_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=128,
            max_position_embeddings=40,
            num_labels=2,
        )
        model = FlaxXLMRobertaForSequenceClassification(config, seed=0)
    else:
        model = FlaxXLMRobertaForSequenceClassification.from_pretrained(directory, num_labels=2)
        config = model.config

    optimizer = create_optimizer(1e-3, num_train_steps=num_steps, num_warmup_steps=6, weight_decay=0.01)
    state = create_train_state(model, optimizer, seed=0)
    train_step = make_train_step(model, accumulation_steps=2)
    eval_step = make_eval_step(model)
    held_out = next(synthetic_batches(config, 1, batch_size=64, seed=1))

    losses = []
    for step, batch in enumerate(synthetic_batches(config, num_steps)):
        state, metrics = train_step(state, batch)
        losses.append(float(metrics["loss"]))
        if step % 10 == 0 or step == num_steps - 1:
            print(f"step {step:3d}  loss {losses[-1]:.4f}")
    output = eval_step(state.params, held_out)
    accuracy = float(np.mean(np.argmax(output.logits, -1) == held_out["labels"]))
    print(f"held-out loss {float(output.loss):.4f}  accuracy {accuracy:.2f}")
    model.params = state.params
    return losses, accuracy


if __name__ == "__main__":
    main(*sys.argv[1:2])

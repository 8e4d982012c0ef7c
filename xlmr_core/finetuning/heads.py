"""A task's new head, drawn with numpy from the seed, so it starts the same in every framework."""

from __future__ import annotations

import numpy as np

from .data import check_task


def head_shapes(task: str, config) -> dict[str, tuple[int, ...]]:
    """The canonical name and shape of each parameter of `task`'s head (multiple choice: with the
    pooler it reads), in drawing order."""
    check_task(task)
    hidden, labels = config.hidden_size, config.num_labels
    if task == "text-classification":
        return {
            "classifier.dense.weight": (hidden, hidden),
            "classifier.dense.bias": (hidden,),
            "classifier.out_proj.weight": (labels, hidden),
            "classifier.out_proj.bias": (labels,),
        }
    if task == "token-classification":
        return {"classifier.weight": (labels, hidden), "classifier.bias": (labels,)}
    if task == "multiple-choice":
        # The only head that reads the pooler, which masked-LM checkpoints (the bundled one) lack.
        return {
            "roberta.pooler.dense.weight": (hidden, hidden),
            "roberta.pooler.dense.bias": (hidden,),
            "classifier.weight": (1, hidden),
            "classifier.bias": (1,),
        }
    if task == "question-answering":
        return {"qa_outputs.weight": (labels, hidden), "qa_outputs.bias": (labels,)}
    shapes = {
        "lm_head.dense.weight": (hidden, hidden),
        "lm_head.dense.bias": (hidden,),
        "lm_head.layer_norm.weight": (hidden,),
        "lm_head.layer_norm.bias": (hidden,),
        "lm_head.bias": (config.vocab_size,),
    }
    if not config.tie_word_embeddings:
        shapes["lm_head.decoder.weight"] = (config.vocab_size, hidden)
    return shapes


def initial_head(task: str, config, seed: int) -> dict[str, np.ndarray]:
    """The head's float32 weights in canonical names and layout, as the reference initialises them:
    linear weights normal(0, initializer_range) drawn in `head_shapes` order from
    `np.random.default_rng(seed)`, biases zero, LayerNorm weights one."""
    rng = np.random.default_rng(seed)
    head = {}
    for name, shape in head_shapes(task, config).items():
        if name.endswith("layer_norm.weight"):
            head[name] = np.ones(shape, dtype=np.float32)
        elif name.endswith("bias"):
            head[name] = np.zeros(shape, dtype=np.float32)
        else:
            head[name] = rng.normal(0.0, config.initializer_range, shape).astype(np.float32)
    return head

"""The AdamW recipe every framework's training helper uses by default.

The reference `transformers.Trainer`'s defaults (`TrainingArguments` in 4.57): betas
(0.9, 0.999), epsilon 1e-8 added to the bias-corrected root of the second moment, no weight
decay unless asked, gradients clipped to a global norm of 1.0, and (when decay is asked)
none on biases and LayerNorm parameters. `xlmr_torch.training.adamw`,
`xlmr_tf.training.adamw` and `xlmr_flax.training.create_optimizer` all take these.
"""

from __future__ import annotations

import re

WEIGHT_DECAY = 0.0
BETAS = (0.9, 0.999)
EPSILON = 1e-8
MAX_GRAD_NORM = 1.0

# Module names whose parameters are normalisation scales and shifts, in any framework's spelling.
_NORM_MODULES = frozenset({"LayerNorm", "layer_norm"})


def decays(name: str) -> bool:
    """Whether weight decay applies to the parameter called `name` (canonical, torch, Flax path
    joined with "." or "/", or a Keras variable path): all but biases and LayerNorm parameters."""
    parts = re.split(r"[./]", name)
    return parts[-1] != "bias" and not _NORM_MODULES.intersection(parts)

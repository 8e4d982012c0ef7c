"""The fine-tuning learning-rate schedule, written once for the three frameworks.

Linear warm-up from 0 then linear decay to 0 at `max_steps`, the reference library's
`get_linear_schedule_with_warmup`: the rate of update `s` (0-based) is
`base * s / warmup` while `s < warmup`, then `base * (max_steps - s) / (max_steps - warmup)`.
Every trainer reads the same table (torch through `LambdaLR`, Keras through a
`LearningRateSchedule`, optax through a callable), so the three apply the same rate at every
step by construction rather than by three formulas kept in step.
"""

from __future__ import annotations

import numpy as np


def learning_rates(base: float, max_steps: int, warmup_steps: int = 0) -> np.ndarray:
    """The rate of each of the `max_steps` updates (float64 `[max_steps]`)."""
    if max_steps < 1:
        raise ValueError(f"max_steps must be >= 1, got {max_steps}")
    if not 0 <= warmup_steps <= max_steps:
        raise ValueError(f"warmup_steps must be in [0, max_steps={max_steps}], got {warmup_steps}")
    step = np.arange(max_steps, dtype=np.float64)
    warm = step / max(warmup_steps, 1)
    decay = (max_steps - step) / max(max_steps - warmup_steps, 1)
    return base * np.where(step < warmup_steps, warm, np.maximum(decay, 0.0))

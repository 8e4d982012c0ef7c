"""XLM-RoBERTa in TensorFlow / Keras 3: the seven models as `keras.Model`s.

Every model reads and writes the shared checkpoint format (see `xlmr_core`) and trains
with `model.compile(optimizer=...)` + `model.fit(...)` using its own loss.
"""

import os
import sys


def _import_tensorflow_quietly() -> None:
    """Import TensorFlow with its C++ start-up burst hidden when TF_CPP_MIN_LOG_LEVEL asks for quiet.

    TensorFlow's runtime writes to stderr before it reads its log level, so the variable
    alone does not silence it. Python errors from the import still propagate as usual.
    """
    if "tensorflow" in sys.modules or os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0") in ("", "0"):
        return
    sys.stderr.flush()
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    try:
        import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def _require_tensorflow_backend() -> None:
    """The models are TensorFlow code: refuse another Keras backend at import, not at the first call."""
    import keras

    backend = keras.config.backend()
    if backend != "tensorflow":
        raise ImportError(
            f"xlmr_tf needs Keras's TensorFlow backend, but Keras runs on {backend!r} (KERAS_BACKEND or "
            "~/.keras/keras.json); set KERAS_BACKEND=tensorflow, or use xlmr_torch (PyTorch) or "
            "xlmr_flax (JAX)"
        )


_import_tensorflow_quietly()
_require_tensorflow_backend()

from . import modeling  # noqa: E402
from .modeling import *  # noqa: E402, F403 - the seven public models and their base class
from .pipeline import pipeline  # noqa: E402  # the function; the module stays importable by name
from .ray_predictor import RayPredictor  # noqa: E402

__all__ = [*modeling.__all__, "pipeline", "RayPredictor"]

"""TensorFlow / Keras 3 XLM-RoBERTa: not implemented yet (tracked by the TF issue).

The package exists so the distribution's layout is fixed; importing it says so plainly
instead of failing later with a confusing attribute error.
"""

raise ImportError("xlmr_tf is not implemented yet; use xlmr_torch (see README.md)")

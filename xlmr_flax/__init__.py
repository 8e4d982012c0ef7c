"""Flax / JAX XLM-RoBERTa: not implemented yet (tracked by the Flax issue).

The package exists so the distribution's layout is fixed; importing it says so plainly
instead of failing later with a confusing attribute error.
"""

raise ImportError("xlmr_flax is not implemented yet; use xlmr_torch (see README.md)")

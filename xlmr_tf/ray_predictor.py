"""`RayPredictor`: this framework's pipelines as a callable class for Ray Data's `map_batches`.

The batch handling is `xlmr_core.pipelines.batch.BatchPredictor`, shared with xlmr_torch, xlmr_flax.
"""

from __future__ import annotations

from xlmr_core.pipelines.batch import BatchPredictor

from .pipeline import pipeline


class RayPredictor(BatchPredictor):
    """Ray Data's `map_batches` callable over this framework's `pipeline` (see `BatchPredictor`)."""

    make_pipeline = staticmethod(pipeline)

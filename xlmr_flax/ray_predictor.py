"""`RayPredictor`: this framework's pipelines as a callable class for Ray Data's `map_batches`.

The batch handling is `xlmr_core.pipelines.batch.BatchPredictor`, shared with xlmr_torch, xlmr_tf.
"""

from __future__ import annotations

from xlmr_core.pipelines.batch import BatchPredictor

from .pipeline import pipeline


class RayPredictor(BatchPredictor):
    """`ds.map_batches(RayPredictor, fn_constructor_args=(task, directory),
    fn_constructor_kwargs=dict(input_column="text", output_column="answer"), concurrency=N,
    batch_size=B)`: each worker builds the pipeline once and adds to every batch a column with each
    row's answer (float32 vectors for embeddings, JSON-serialisable values otherwise). Further
    keyword arguments are the pipeline's options."""

    def __init__(
        self, task: str, directory, *, input_column: str = "text", output_column: str = "answer", **options
    ):
        super().__init__(
            task, directory, pipeline, input_column=input_column, output_column=output_column, **options
        )

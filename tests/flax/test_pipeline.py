"""The Flax pipeline adapter: pipelines over one model share its compiled forward calls."""

from __future__ import annotations

import xlmr_flax
from tests.cross.pipeline_checks import Models
from xlmr_core.pretrained import bundled_checkpoint


def test_a_second_pipeline_over_a_model_compiles_nothing_new(monkeypatch):
    """The jitted step is kept per model: a new pipeline on a shape seen before traces nothing."""
    models, directory = Models(), bundled_checkpoint()
    model = models.get("flax", "Model", directory)
    first = xlmr_flax.pipeline("feature-extraction", model, models.tokenizer(directory))
    expected = first("Hello there")
    traced = []
    original = type(model).__call__

    def counting(self, *args, **kwargs):
        traced.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(type(model), "__call__", counting)
    second = xlmr_flax.pipeline("feature-extraction", model, models.tokenizer(directory))
    assert second("Hello there") == expected
    assert traced == []

"""The exact GELU: written with `erf` (tf2onnx has no `Erfc`), the numbers of `tf.nn.gelu`."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from xlmr_tf.activations import gelu

from .conftest import build, inputs_for


def test_gelu_equals_tensorflows_exact_gelu():
    x = tf.constant(np.linspace(-12.0, 12.0, 4001), tf.float32)
    np.testing.assert_allclose(gelu(x), tf.nn.gelu(x, approximate=False), rtol=0, atol=1e-6)


def _graph_ops(function, *specs) -> set[str]:
    graph = tf.function(function).get_concrete_function(*specs).graph.as_graph_def()
    ops = {node.op for node in graph.node}
    for library_function in graph.library.function:  # the bodies of nested functions
        ops |= {node.op for node in library_function.node_def}
    return ops


def test_a_traced_model_with_an_lm_head_holds_no_erfc():
    model = build("TFXLMRobertaForMaskedLM")
    spec = tf.TensorSpec([None, None], tf.int32)
    ops = _graph_ops(lambda ids: model({"input_ids": ids}).logits, spec)
    assert "Erf" in ops  # the intermediate layer's and the LM head's GELU
    assert "Erfc" not in ops
    logits = model(inputs_for("TFXLMRobertaForMaskedLM")).logits
    assert np.isfinite(np.asarray(logits)).all()

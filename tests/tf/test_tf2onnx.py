"""tf2onnx: `tf2onnx.convert.from_keras` on the serving signature, run by onnxruntime, equals eager.

The masked LM used to convert but fail in onnxruntime at the first attention reshape (the
query projection's `tf.tensordot` came out rank 2 in the ONNX graph); `xlmr_tf.dense.Dense`
writes the same matmul with the input's shape. Multiple choice covers rank-3 ids.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from xlmr_tf.dense import Dense

from .conftest import build
from .test_export import SHAPES, serving_inputs

tf2onnx = pytest.importorskip("tf2onnx", reason="the onnx extra: pip install 'xlmr[tf,onnx]'")
ort = pytest.importorskip("onnxruntime")


@pytest.mark.parametrize("head", ["TFXLMRobertaForMaskedLM", "TFXLMRobertaForMultipleChoice"])
def test_from_keras_converts_and_onnxruntime_matches_eager(head):
    model = build(head)
    proto, _ = tf2onnx.convert.from_keras(model, input_signature=[model.serving_signature()], opset=17)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]
    for batch, length in SHAPES:  # one graph, dynamic batch and length
        inputs = serving_inputs(head, batch, length)
        expected = model.serve(inputs)
        got = dict(zip(names, session.run(None, inputs)))
        assert sorted(got) == sorted(expected)
        for name, value in expected.items():
            np.testing.assert_allclose(
                got[name], value, atol=1e-5, rtol=0, err_msg=f"{name} {batch}x{length}"
            )


def test_the_dense_layer_is_bit_identical_to_keras_dense_on_rank_3_inputs():
    inputs = tf.constant(np.random.default_rng(0).standard_normal((3, 5, 16)), tf.float32)
    ours, keras_dense = Dense(8, activation="tanh"), keras.layers.Dense(8, activation="tanh")
    ours.build(inputs.shape)
    keras_dense.build(inputs.shape)
    kernel, bias = ours.get_weights()  # ours is [out, in], Keras's [in, out]
    keras_dense.set_weights([kernel.T, bias])
    np.testing.assert_array_equal(ours(inputs), keras_dense(inputs))
    np.testing.assert_array_equal(ours(inputs[0]), keras_dense(inputs[0]))  # rank 2: Keras's own call

"""`xlmr_tf.resume.BackupAndRestore` (Keras's, plus dropout's seed states): a `fit` interrupted
after epoch k and run again with the same backup folder ends with the weights of an
uninterrupted `fit`. Keras's own callback does so only without dropout."""

from __future__ import annotations

import os

import numpy as np
import pytest

from xlmr_tf.resume import BackupAndRestore

from .conftest import build, inputs_for, keras, labels_for, tf

EPOCHS, STOP_AFTER = 4, 2
TOLERANCE = 1e-6
heavy = pytest.mark.skipif(
    os.environ.get("XLMR_HEAVY") != "1", reason="slow: set XLMR_HEAVY=1 (nox -s distributed)"
)
HEAD = "TFXLMRobertaForSequenceClassification"


class Interrupt(Exception):
    pass


class StopAfterEpoch(keras.callbacks.Callback):
    """Raise at the end of epoch `epoch` (0-based), after the backup has been written."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            raise Interrupt(f"stopped after epoch {epoch}")


def _dataset():
    # Fixed order (no shuffle): the data position is the epoch and batch BackupAndRestore keeps.
    features = inputs_for(HEAD, batch=8, length=7)
    return tf.data.Dataset.from_tensor_slices({**features, **labels_for(HEAD, batch=8)}).batch(4)


def _model(dropout):
    model = build(HEAD, hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
    model.compile(optimizer=keras.optimizers.AdamW(1e-3))
    return model


def _fit(model, callbacks=()):
    model.fit(_dataset(), epochs=EPOCHS, verbose=0, callbacks=list(callbacks))
    return [np.asarray(w) for w in model.weights]


def _interrupted_then_resumed(tmp_path, dropout, callback):
    with pytest.raises(Interrupt):
        _fit(_model(dropout), [callback(str(tmp_path / "backup")), StopAfterEpoch(STOP_AFTER - 1)])
    return _fit(_model(dropout), [callback(str(tmp_path / "backup"))])


def _max_diff(a, b):
    assert len(a) == len(b)
    return max(float(np.abs(x - y).max()) for x, y in zip(a, b))


@pytest.mark.parametrize(
    "dropout, callback",
    [pytest.param(0.0, keras.callbacks.BackupAndRestore, marks=heavy), (0.1, BackupAndRestore)],
    ids=["keras-no-dropout", "xlmr-dropout"],
)
def test_resumed_fit_matches_uninterrupted(tmp_path, dropout, callback):
    straight = _fit(_model(dropout))
    assert _max_diff(_interrupted_then_resumed(tmp_path, dropout, callback), straight) <= TOLERANCE


@heavy
def test_keras_callback_alone_loses_the_dropout_stream(tmp_path):
    # Why xlmr_tf.resume exists: the control for the dropout case above.
    straight = _fit(_model(0.1))
    assert (
        _max_diff(_interrupted_then_resumed(tmp_path, 0.1, keras.callbacks.BackupAndRestore), straight) > 1e-5
    )

"""Training runs for test_distribute.py, each in a fresh process (devices are fixed when TF starts).

    python -m tests.tf.distribute_script mirrored STATE_DIR OUT.json [CASE ...]
        2 logical CPUs: the cases named (default: every case of `CASES`) on one device and
        under MirroredStrategy
    python -m tests.tf.distribute_script worker STATE_DIR OUT_DIR     (TF_CONFIG set)
        one worker of MultiWorkerMirroredStrategy; the chief writes the final weights

STATE_DIR holds each case's starting weights (`<case>.npz`, canonical names), so that
every run starts from the same model.
"""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

# Cases: (name, head, optimizer, compiled Keras loss or None for the model's own loss).
CASES = (
    ("own_loss_adamw", "TFXLMRobertaForSequenceClassification", "adamw", None),
    ("own_loss_sgd", "TFXLMRobertaForSequenceClassification", "sgd", None),
    ("uneven_ignored_tokens", "TFXLMRobertaForTokenClassification", "adamw", None),
    ("compiled_loss", "TFXLMRobertaForSequenceClassification", "adamw", "sparse_categorical_crossentropy"),
)
GLOBAL_BATCH, EXAMPLES, EPOCHS = 4, 8, 2


def dataset(head: str, compiled: bool):
    from tests.tf.conftest import inputs_for, labels_for

    features = {k: v for k, v in inputs_for(head, batch=EXAMPLES).items()}
    labels = labels_for(head, batch=EXAMPLES)["labels"]
    if head == "TFXLMRobertaForTokenClassification":
        labels[[0, 1, 4], 2:] = -100  # replicas see different numbers of real labels
    data = (features, labels) if compiled else {**features, "labels": labels}
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return tf.data.Dataset.from_tensor_slices(data).batch(GLOBAL_BATCH).with_options(options)


def train(strategy, case, state_dir: str) -> dict[str, np.ndarray]:
    """`fit` for EPOCHS from the case's saved start; the canonical weights after it."""
    import keras

    import xlmr_tf
    from tests.tf.conftest import config_for

    name, head, optimizer, loss = case
    with np.load(os.path.join(state_dir, f"{name}.npz")) as start:
        state = dict(start)
    with strategy.scope():
        model = getattr(xlmr_tf, head)(config_for(head))
        model.load_canonical_state(state)
        if optimizer == "adamw":
            optimizer = keras.optimizers.AdamW(1e-3)
        else:
            optimizer = keras.optimizers.SGD(0.05)
        if loss is not None:
            loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        model.compile(optimizer=optimizer, loss=loss)
    model.fit(dataset(head, loss is not None), epochs=EPOCHS, shuffle=False, verbose=0)
    return model.canonical_state()


def bad_label_error(strategy) -> str:
    """The error of a `fit` under `strategy` whose batch has a label past `num_labels` (the host-side
    batch check runs on each replica's part before the compiled step)."""
    import keras

    import xlmr_tf
    from tests.tf.conftest import config_for, inputs_for

    head = "TFXLMRobertaForSequenceClassification"
    with strategy.scope():
        model = getattr(xlmr_tf, head)(config_for(head))
        model.compile(optimizer=keras.optimizers.SGD(0.05))
    labels = np.array([0, 1, 1, 0], np.int32)
    labels[3] = model.config.num_labels  # in the second replica's half of the global batch
    data = {**inputs_for(head, batch=GLOBAL_BATCH), "labels": labels}
    try:
        model.fit(tf.data.Dataset.from_tensor_slices(data).batch(GLOBAL_BATCH), epochs=1, verbose=0)
    except Exception as error:  # noqa: BLE001 - reported as it is, for the test to judge
        return f"{type(error).__name__}: {error}"
    return "no error"


def main(mode: str, state_dir: str, out: str, *names: str) -> None:
    if mode == "mirrored":
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        # The default cross-device ops (CPU ring collectives), as a user gets them.
        mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        one = tf.distribute.OneDeviceStrategy("/cpu:0")
        report, singles, fits = {}, {}, {}
        # A case named twice is fitted twice under the one strategy (its collectives' keys carry
        # on from the first fit), reported as "<case>#2" against the same one-device run.
        for name in names or [case[0] for case in CASES]:
            case = next(case for case in CASES if case[0] == name)
            if name not in singles:
                singles[name] = train(one, case, state_dir)
            single, replicated = singles[name], train(mirrored, case, state_dir)
            with np.load(os.path.join(state_dir, f"{name}.npz")) as start:
                moved = max(float(np.abs(single[k] - start[k]).max()) for k in single)
            fits[name] = fits.get(name, 0) + 1
            report[name if fits[name] == 1 else f"{name}#{fits[name]}"] = {
                "replicas": mirrored.num_replicas_in_sync,
                "diff": {k: float(np.abs(single[k] - replicated[k]).max()) for k in single},
                "moved": moved,
            }
        report["bad_label_error"] = bad_label_error(mirrored)
        with open(out, "w") as file:
            json.dump(report, file)
    elif mode == "worker":
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        task = json.loads(os.environ["TF_CONFIG"])["task"]
        for case in CASES:
            weights = train(strategy, case, state_dir)
            if task["index"] == 0:
                np.savez(
                    os.path.join(out, f"{case[0]}.npz"), replicas=strategy.num_replicas_in_sync, **weights
                )
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(*sys.argv[1:])

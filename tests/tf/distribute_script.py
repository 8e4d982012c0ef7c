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


def main(mode: str, state_dir: str, out: str, *names: str) -> None:
    if mode == "mirrored":
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        # ReductionToOneDevice: the CPU collectives of the default cross-device ops can pair the
        # two replicas' all-reduces out of order (a shape-mismatch abort) on logical CPUs.
        mirrored = tf.distribute.MirroredStrategy(
            ["/cpu:0", "/cpu:1"], cross_device_ops=tf.distribute.ReductionToOneDevice()
        )
        one = tf.distribute.OneDeviceStrategy("/cpu:0")
        report = {}
        for case in [case for case in CASES if not names or case[0] in names]:
            single, replicated = train(one, case, state_dir), train(mirrored, case, state_dir)
            with np.load(os.path.join(state_dir, f"{case[0]}.npz")) as start:
                moved = max(float(np.abs(single[k] - start[k]).max()) for k in single)
            report[case[0]] = {
                "replicas": mirrored.num_replicas_in_sync,
                "diff": {k: float(np.abs(single[k] - replicated[k]).max()) for k in single},
                "moved": moved,
            }
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

"""`keras.callbacks.BackupAndRestore` that also restores dropout's random streams.

Keras backs up the weights and the optimizer, not the state of the layers' seed
generators: a resumed `fit` then draws other dropout masks than an uninterrupted one and
ends with other weights. `BackupAndRestore` here saves those states beside the backup, so
a resumed `fit` equals an uninterrupted one exactly (with a fixed dataset order).

    model.fit(dataset, epochs=10, callbacks=[BackupAndRestore("backup")])
"""

from __future__ import annotations

import os

import keras
import numpy as np

SEED_FILE = "seed_generators.npz"


def seed_generators(model: keras.Model) -> list:
    """Every seed generator of `model`'s layers, in a fixed order."""
    found, seen = [], set()
    for layer in model._flatten_layers(include_self=True, recursive=True):
        for generator in getattr(layer, "_seed_generators", ()):
            if id(generator) not in seen:
                seen.add(id(generator))
                found.append(generator)
    return found


class BackupAndRestore(keras.callbacks.BackupAndRestore):
    """Keras's callback (same arguments), plus the seed-generator states."""

    def _seed_path(self) -> str:
        return os.path.join(self.backup_dir, SEED_FILE)

    def _save_model(self):
        super()._save_model()
        states = {f"g{i}": np.asarray(g.state.value) for i, g in enumerate(seed_generators(self.model))}
        temporary = self._seed_path() + ".tmp.npz"
        np.savez(temporary, **states)
        os.replace(temporary, self._seed_path())  # whole file or the previous one

    def _load_model(self):
        super()._load_model()
        if os.path.exists(self._seed_path()):
            with np.load(self._seed_path()) as states:
                generators = seed_generators(self.model)
                if len(states.files) != len(generators):
                    raise ValueError(
                        f"{self._seed_path()} holds {len(states.files)} seed generators, "
                        f"the model has {len(generators)}"
                    )
                for i, generator in enumerate(generators):
                    generator.state.assign(states[f"g{i}"])

    def on_train_end(self, logs=None):
        super().on_train_end(logs)
        if not os.path.exists(self._weights_path) and os.path.exists(self._seed_path()):
            os.remove(self._seed_path())  # Keras deleted the backup of a finished run

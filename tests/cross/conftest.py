"""Fixtures shared by the cross-framework tests."""

from __future__ import annotations

import pytest

from tests.cross.harness import config_for, load_adapter


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory):
    """`checkpoint(head, **config_overrides)` -> (directory, config): a random torch checkpoint,
    made once per key."""
    made = {}

    def make(head, **overrides):
        key = (head, tuple(sorted(overrides.items())))
        if key not in made:
            config = config_for(head, **overrides)
            directory = tmp_path_factory.mktemp(f"{head}-{'-'.join(map(str, overrides.values())) or 'base'}")
            load_adapter("torch").random_checkpoint(config, head, directory)
            made[key] = (directory, config)
        return made[key]

    return make

"""The bundled checkpoint ships inside the package: every file is declared package data."""

import fnmatch

import pytest

from tests.conftest import REPO_ROOT
from xlmr_core.pretrained import BUNDLED_CHECKPOINT, bundled_checkpoint


def test_every_bundled_file_is_declared_package_data():
    tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from Python 3.11")
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = pyproject["tool"]["setuptools"]["package-data"]["xlmr_core"]
    package = REPO_ROOT / "xlmr_core"
    files = [p.relative_to(package).as_posix() for p in bundled_checkpoint().iterdir()]
    assert files
    assert [f for f in files if not any(fnmatch.fnmatch(f, pattern) for pattern in patterns)] == []


def test_the_bundled_checkpoint_lives_in_the_package():
    assert BUNDLED_CHECKPOINT.resolve().is_relative_to((REPO_ROOT / "xlmr_core").resolve())

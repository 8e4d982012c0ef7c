"""`import xlmr_core` never imports a deep-learning framework."""

import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    "module", ["xlmr_core", "xlmr_core.checkpoint", "xlmr_core.weight_mapping", "xlmr_core.outputs"]
)
def test_core_imports_no_framework(module):
    code = (
        f"import sys, {module}\n"
        "frameworks = {'torch', 'tensorflow', 'jax', 'flax', 'keras'}\n"
        "loaded = sorted({m.split('.')[0] for m in sys.modules} & frameworks)\n"
        "print(','.join(loaded))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""

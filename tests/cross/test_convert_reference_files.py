"""Files written by the reference library convert to ours, and ours load in the reference.

For each of `pytorch_model.bin`, `tf_model.h5` and `flax_model.msgpack`: the reference model
saves its file and computes logits; we convert the file and our PyTorch model must give the
same logits. The other way: we write the file with `--format`, the reference loads it and
must give our logits. TF runs in a subprocess (the reference TF needs legacy Keras).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from conversion.cli import main
from tests.cross.test_convert_cli import only_format, write_checkpoint

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
xlmr_torch = pytest.importorskip("xlmr_torch")

TOLERANCE = 1e-5


def token_ids() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    ids = rng.integers(4, 99, size=(2, 10))
    ids[:, 0], ids[:, -1] = 0, 2
    mask = np.ones_like(ids)
    ids[1, 6:], mask[1, 6:] = 1, 0
    return ids, mask


def our_logits(directory: Path) -> np.ndarray:
    model = xlmr_torch.XLMRobertaForMaskedLM.from_pretrained(directory)
    ids, mask = token_ids()
    with torch.no_grad():
        return model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).logits.numpy()


# The reference side, run in a subprocess: save a fresh model + its logits, load ours + its logits.
_REFERENCE_SCRIPT = textwrap.dedent(
    """
    import os, sys
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import numpy as np
    framework, ours, reference, out = sys.argv[1:5]
    ids, mask = np.load(out + "/ids.npy"), np.load(out + "/mask.npy")
    import transformers
    config = transformers.XLMRobertaConfig.from_pretrained(ours)
    if framework == "tf":
        import tensorflow as tf
        tf.random.set_seed(0)
        model = transformers.TFXLMRobertaForMaskedLM(config)
        model(model.dummy_inputs)
        loaded = transformers.TFXLMRobertaForMaskedLM.from_pretrained(ours)
        run = lambda m: m(input_ids=ids, attention_mask=mask, training=False).logits.numpy()
    else:
        model = transformers.FlaxXLMRobertaForMaskedLM(config, seed=0)
        loaded = transformers.FlaxXLMRobertaForMaskedLM.from_pretrained(ours)
        run = lambda m: np.asarray(m(input_ids=ids, attention_mask=mask).logits)
    model.save_pretrained(reference)
    np.save(out + "/reference_logits.npy", run(model))
    np.save(out + "/loaded_logits.npy", run(loaded))
    """
)


@pytest.mark.parametrize("framework", ["tf", "flax"])
def test_reference_tf_and_flax_files_convert_and_ours_load_in_the_reference(tmp_path, framework):
    pytest.importorskip("h5py")
    pytest.importorskip("tensorflow" if framework == "tf" else "flax")
    write_checkpoint(tmp_path / "canonical")
    assert (
        main(["convert", str(tmp_path / "canonical"), str(tmp_path / "all"), "--format", framework, "-q"])
        == 0
    )
    ours = only_format(tmp_path / "all", framework, tmp_path / "ours")
    ids, mask = token_ids()
    np.save(tmp_path / "ids.npy", ids)
    np.save(tmp_path / "mask.npy", mask)
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(
        [sys.executable, "-c", _REFERENCE_SCRIPT, framework, ours, tmp_path / "reference", tmp_path],
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]

    # Ours, loaded by the reference, gives our numbers.
    expected = our_logits(tmp_path / "canonical")
    assert np.max(np.abs(np.load(tmp_path / "loaded_logits.npy") - expected)) <= TOLERANCE
    # The reference's own file converts to a checkpoint that gives the reference's numbers.
    assert main(["convert", str(tmp_path / "reference"), str(tmp_path / "converted"), "-q"]) == 0
    reference_logits = np.load(tmp_path / "reference_logits.npy")
    assert np.max(np.abs(our_logits(tmp_path / "converted") - reference_logits)) <= TOLERANCE


def test_reference_pytorch_bin_converts_and_ours_loads_in_the_reference(tmp_path):
    import transformers

    write_checkpoint(tmp_path / "canonical")
    assert (
        main(["convert", str(tmp_path / "canonical"), str(tmp_path / "all"), "--format", "torch", "-q"]) == 0
    )
    ours = only_format(tmp_path / "all", "torch", tmp_path / "ours")
    ids, mask = token_ids()
    inputs = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}

    loaded = transformers.XLMRobertaForMaskedLM.from_pretrained(ours).eval()
    with torch.no_grad():
        assert (
            np.max(np.abs(loaded(**inputs).logits.numpy() - our_logits(tmp_path / "canonical"))) <= TOLERANCE
        )

    torch.manual_seed(0)
    config = transformers.XLMRobertaConfig.from_pretrained(ours)
    reference = transformers.XLMRobertaForMaskedLM(config).eval()
    reference.save_pretrained(tmp_path / "reference", safe_serialization=False)
    assert (tmp_path / "reference" / "pytorch_model.bin").is_file()
    assert main(["convert", str(tmp_path / "reference"), str(tmp_path / "converted"), "-q"]) == 0
    with torch.no_grad():
        reference_logits = reference(**inputs).logits.numpy()
    assert np.max(np.abs(our_logits(tmp_path / "converted") - reference_logits)) <= TOLERANCE

"""SavedModel export with the TF tools as they are: `tf.saved_model.save(model, d)` and `model.export(d)`.

Every head is written both ways; one fresh interpreter that cannot import xlmr (no site
packages processing, so not the editable install either) reloads them all with
`tf.saved_model.load` and runs `serving_default` at several shapes against the eager outputs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from .conftest import HEADS, HEAVY, PAD, VOCAB, build

SHAPES = ((1, 4), (2, 9), (3, 17))
WAYS = ("tf_saved_model_save", "model_export")
# (head, way) pairs written: all of them under XLMR_HEAVY=1, else one head each way.
CASES = (
    [(head, way) for head in HEADS for way in WAYS]
    if HEAVY
    else [("TFXLMRobertaForSequenceClassification", WAYS[0]), ("TFXLMRobertaForMultipleChoice", WAYS[1])]
)


def serving_inputs(head: str, batch: int, length: int, seed: int = 0) -> dict[str, np.ndarray]:
    """int32 ids with the last row padded to half its length; multiple choice has 2 choices."""
    rows = batch * (2 if head == "TFXLMRobertaForMultipleChoice" else 1)
    ids = np.random.default_rng(seed + length).integers(3, VOCAB, (rows, length)).astype(np.int32)
    mask = np.ones_like(ids)
    if rows > 1:
        ids[-1, length // 2 :], mask[-1, length // 2 :] = PAD, 0
    shape = (batch, 2, length) if head == "TFXLMRobertaForMultipleChoice" else (batch, length)
    types = np.zeros_like(ids)
    types[:, length // 2 :] = 1  # the tiny config has two token types: serve them
    return {
        "input_ids": ids.reshape(shape),
        "attention_mask": mask.reshape(shape),
        "token_type_ids": types.reshape(shape),
    }


RELOAD = textwrap.dedent(
    """
    import json, os, sys
    sys.path.append(sys.argv[2])  # site-packages, without its .pth files (the editable xlmr)
    try:
        import xlmr_tf  # noqa: F401
    except ModuleNotFoundError:
        pass
    else:
        raise SystemExit("xlmr_tf is importable in the serving process")
    import numpy as np
    import tensorflow as tf

    root, report = sys.argv[1], {}
    for name in sorted(os.listdir(root)):
        serving = tf.saved_model.load(os.path.join(root, name)).signatures["serving_default"]
        specs = serving.structured_input_signature[1]
        report[name] = {"inputs": {k: [s.dtype.name, list(s.shape)] for k, s in specs.items()}, "diff": []}
        for case in sorted(f for f in os.listdir(os.path.join(root, "..", "cases")) if f.startswith(name)):
            data = np.load(os.path.join(root, "..", "cases", case))
            out = serving(**{k: tf.constant(data[k]) for k in specs})
            report[name]["outputs"] = sorted(out)
            diffs = [float(np.abs(out[k].numpy() - data["out_" + k]).max()) for k in out]
            report[name]["diff"].append(max(diffs))
    print(json.dumps(report))
    """
)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """Every head saved both ways, eager outputs beside them, reloaded in one clean process."""
    root = tmp_path_factory.mktemp("served")
    (root / "models").mkdir()
    (root / "cases").mkdir()
    expected_outputs = {}
    for head, way in CASES:
        model = build(head)
        if way == "tf_saved_model_save":
            tf.saved_model.save(model, str(root / "models" / f"{head}.{way}"))
        else:
            model.export(str(root / "models" / f"{head}.{way}"), verbose=False)
        for batch, length in SHAPES:
            inputs = serving_inputs(head, batch, length)
            eager = model.serve(inputs)
            expected_outputs[head] = sorted(eager)
            arrays = {**inputs, **{f"out_{k}": np.asarray(v) for k, v in eager.items()}}
            np.savez(root / "cases" / f"{head}.{way}.{batch}x{length}.npz", **arrays)
    site_packages = sysconfig.get_paths()["purelib"]
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", RELOAD, str(root / "models"), site_packages],
        capture_output=True,
        text=True,
        cwd=root,
        env=environment,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout), expected_outputs, root / "models"


@pytest.mark.parametrize("head, way", CASES)
def test_every_head_serves_int32_ids_of_any_shape_and_matches_eager(served, head, way):
    report, expected_outputs, _ = served
    entry = report[f"{head}.{way}"]
    rank = 3 if head == "TFXLMRobertaForMultipleChoice" else 2
    assert entry["inputs"] == {
        name: ["int32", [None] * rank] for name in ("input_ids", "attention_mask", "token_type_ids")
    }
    assert entry["outputs"] == expected_outputs[head]  # a plain dict of the head's fields
    assert len(entry["diff"]) == len(SHAPES)
    assert max(entry["diff"]) <= 1e-5, entry["diff"]


def test_a_model_with_one_token_type_serves_ids_and_mask_only():
    model = build("TFXLMRobertaForTokenClassification", type_vocab_size=1)
    assert sorted(model.serving_signature()) == ["attention_mask", "input_ids"]


def test_the_served_graph_still_checks_the_ids(served):
    head, way = CASES[0]
    serving = tf.saved_model.load(str(served[2] / f"{head}.{way}")).signatures["serving_default"]
    ids = tf.constant([[0, VOCAB]], tf.int32)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"input_ids must be in \[0, 99\)"):
        serving(input_ids=ids, attention_mask=tf.ones_like(ids), token_type_ids=tf.zeros_like(ids))

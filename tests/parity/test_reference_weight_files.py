"""The weight files the reference library writes load in every one of our frameworks.

In one subprocess (the reference TF port needs legacy Keras) `transformers` 4.57.6 builds
models with every weight perturbed and saves them the ways published checkpoints come:
PyTorch as `model.safetensors` sharded, `pytorch_model.bin` single and sharded; TF as
`tf_model.h5`; Flax as `flax_model.msgpack`; each with the outputs that framework computed.
Then `xlmr_torch`, `xlmr_tf` and `xlmr_flax` each load every directory (no conversion step)
and must give the reference's outputs to 1e-5 with nothing missing or unexpected.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytest.importorskip("transformers")
pytest.importorskip("tf_keras")
pytest.importorskip("torch")
pytest.importorskip("h5py")

from tests.cross.harness import FRAMEWORKS, OUTPUT_TOLERANCE, load_adapter  # noqa: E402

HEADS = ("Model", "ForMaskedLM", "ForSequenceClassification")
FILES = ("sharded-safetensors", "bin", "sharded-bin", "h5", "msgpack")
PREFIXES = {"torch": "XLMRoberta", "tf": "TFXLMRoberta", "flax": "FlaxXLMRoberta"}
OUTPUT = {"Model": "last_hidden_state", "ForMaskedLM": "logits", "ForSequenceClassification": "logits"}

_REFERENCE = textwrap.dedent(
    """
    import os, sys
    import numpy as np
    import transformers, torch, tensorflow as tf, jax
    out = sys.argv[1]
    config = transformers.XLMRobertaConfig(
        vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=37, max_position_embeddings=40, type_vocab_size=2, num_labels=3,
        layer_norm_eps=1e-5,
    )
    ids = np.array([[0, 5, 17, 33, 8, 2], [0, 44, 9, 2, 1, 1]])
    mask = (ids != 1).astype(np.int64)
    np.save(f"{out}/ids.npy", ids)
    for head, field in [("Model", "last_hidden_state"), ("ForMaskedLM", "logits"),
                        ("ForSequenceClassification", "logits")]:
        torch.manual_seed(0)
        model = getattr(transformers, f"XLMRoberta{head}")(config).eval()
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.05 * torch.randn_like(p))
            result = getattr(model(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask)), field)
        for name, kwargs in [("sharded-safetensors", dict(max_shard_size="20kB")),
                             ("bin", dict(safe_serialization=False)),
                             ("sharded-bin", dict(safe_serialization=False, max_shard_size="20kB"))]:
            model.save_pretrained(f"{out}/{head}-{name}", **kwargs)
            np.save(f"{out}/{head}-{name}/expected.npy", result.numpy())

        tf.random.set_seed(0)
        model = getattr(transformers, f"TFXLMRoberta{head}")(config)
        model(model.dummy_inputs)
        rng = np.random.default_rng(1)
        for w in model.weights:
            w.assign(w.numpy() + 0.05 * rng.standard_normal(w.shape).astype(np.float32))
        result = getattr(model(input_ids=ids, attention_mask=mask, training=False), field).numpy()
        model.save_pretrained(f"{out}/{head}-h5")
        np.save(f"{out}/{head}-h5/expected.npy", result)

        model = getattr(transformers, f"FlaxXLMRoberta{head}")(config, seed=0)
        leaves, tree = jax.tree_util.tree_flatten(model.params)
        keys = jax.random.split(jax.random.PRNGKey(2), len(leaves))
        model.params = jax.tree_util.tree_unflatten(
            tree, [x + 0.05 * jax.random.normal(k, x.shape, x.dtype) for x, k in zip(leaves, keys)]
        )
        result = np.asarray(getattr(model(input_ids=ids, attention_mask=mask), field))
        model.save_pretrained(f"{out}/{head}-msgpack")
        np.save(f"{out}/{head}-msgpack/expected.npy", result)
    """
)


@pytest.fixture(scope="module")
def reference_files(tmp_path_factory):
    out = tmp_path_factory.mktemp("reference-files")
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(
        [sys.executable, "-c", _REFERENCE, out], capture_output=True, text=True, env=env, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def test_the_reference_wrote_each_kind_of_file(reference_files):
    written = {
        name: sorted(p.name for p in (reference_files / f"ForMaskedLM-{name}").iterdir()) for name in FILES
    }
    assert "model.safetensors.index.json" in written["sharded-safetensors"]
    assert written["bin"] == ["config.json", "expected.npy", "pytorch_model.bin"]
    assert "pytorch_model.bin.index.json" in written["sharded-bin"]
    assert "tf_model.h5" in written["h5"] and "flax_model.msgpack" in written["msgpack"]


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("name", FILES)
@pytest.mark.parametrize("head", HEADS)
def test_a_reference_file_loads_in_every_framework_with_the_reference_outputs(
    reference_files, head, name, framework
):
    adapter = load_adapter(framework)
    directory = reference_files / f"{head}-{name}"
    cls = getattr(importlib.import_module(f"xlmr_{framework}"), f"{PREFIXES[framework]}{head}")
    model, info = cls.from_pretrained(directory, output_loading_info=True)
    assert info == {"missing_keys": [], "unexpected_keys": []}
    ids = np.load(reference_files / "ids.npy")
    out = adapter.forward(model, {"input_ids": ids, "attention_mask": (ids != 1).astype(np.int64)})
    expected = np.load(directory / "expected.npy")
    assert np.max(np.abs(out[OUTPUT[head]] - expected)) <= OUTPUT_TOLERANCE

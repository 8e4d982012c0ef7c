"""TF `from_pretrained`: built uninitialised, copied (with `mmap=True`: file maps adopted where aligned).

Expected values come from the file itself (`load_checkpoint`, numpy reads independent of the TF
loader) or from the initialisation rules (normal kernels and tables with a zero pad row, zero
biases, LayerNorm ones).
"""

from __future__ import annotations

import json
import struct

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf

import xlmr_tf
from xlmr_core.checkpoint import load_checkpoint, save_checkpoint
from xlmr_core.errors import CheckpointError
from xlmr_core.formats import safetensors
from xlmr_core.formats.base import BFLOAT16
from xlmr_tf import checkpoint_io, pretrained
from xlmr_tf.dense import Dense, UnsupportedLayerOption

from .conftest import HEADS, PAD, build, config_for, token_ids


def _assert_state_equals_file(model, directory, skip=()):
    on_file = load_checkpoint(directory)
    ours = model.canonical_state()
    prefix = f"{model.base_model_prefix}."
    compared = 0
    for name, array in ours.items():
        if name in skip:
            continue
        stored = on_file.get(name, on_file.get(name.removeprefix(prefix)))
        if stored is None:  # the tied decoder and the pooler of a head checkpoint are not on file
            continue
        np.testing.assert_array_equal(array, stored.astype(array.dtype), err_msg=name)
        compared += 1
    assert compared >= len(on_file) - 2


def _misalign(directory) -> None:
    """Rewrite the safetensors header so the data section starts 8 bytes off a 64-byte boundary,
    as files written by other tools (which pad to 8) usually do."""
    path = directory / "model.safetensors"
    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    header = raw[8 : 8 + length].rstrip(b" ")
    header += b" " * (-len(header) % 64)  # 8 + a multiple of 64
    path.write_bytes(struct.pack("<Q", len(header)) + header + raw[8 + length :])


@pytest.mark.parametrize("head", HEADS)
def test_every_loaded_weight_equals_the_file(head, tmp_path):
    build(head, seed=11).save_pretrained(tmp_path)
    _assert_state_equals_file(getattr(xlmr_tf, head).from_pretrained(tmp_path), tmp_path)


@pytest.mark.parametrize("head", ["TFXLMRobertaModel", "TFXLMRobertaForMaskedLM"])
def test_a_file_whose_data_is_not_64_byte_aligned_loads_the_same(head, tmp_path):
    build(head, seed=12).save_pretrained(tmp_path)
    _misalign(tmp_path)
    _assert_state_equals_file(getattr(xlmr_tf, head).from_pretrained(tmp_path), tmp_path)


def test_bfloat16_weights_load_cast_to_the_variables_float32(tmp_path):
    model = build("TFXLMRobertaForMaskedLM", seed=13)
    state = {name: array.astype(BFLOAT16) for name, array in model.canonical_state().items()}
    save_checkpoint(tmp_path, state, model.config)
    loaded = xlmr_tf.TFXLMRobertaForMaskedLM.from_pretrained(tmp_path)
    assert loaded.roberta.embeddings.word_embeddings.table.dtype == "float32"
    _assert_state_equals_file(loaded, tmp_path)


def test_our_safetensors_files_start_their_data_64_byte_aligned(tmp_path):
    build("TFXLMRobertaModel").save_pretrained(tmp_path)
    raw = (tmp_path / "model.safetensors").read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    assert (8 + length) % 64 == 0
    assert json.loads(raw[8 : 8 + length])  # the padding is JSON whitespace


def _mapped_ranges(path) -> list[tuple[int, int]]:
    ranges = []
    with open("/proc/self/maps") as maps:
        for line in maps:
            if line.rstrip().endswith(str(path)):
                start, stop = line.split()[0].split("-")
                ranges.append((int(start, 16), int(stop, 16)))
    return ranges


def test_with_mmap_an_aligned_table_becomes_the_variable_storage_without_a_copy(tmp_path):
    build("TFXLMRobertaModel", seed=14).save_pretrained(tmp_path)
    model = xlmr_tf.TFXLMRobertaModel.from_pretrained(tmp_path, mmap=True)  # the opt-in
    table = model.roberta.embeddings.word_embeddings.table.value.read_value()
    address = np.from_dlpack(table).ctypes.data  # (`numpy()` would copy an outside buffer)
    ranges = _mapped_ranges((tmp_path / "model.safetensors").resolve())
    assert any(start <= address < stop for start, stop in ranges), "the table is a copy, not the map"


def _storage_address(variable) -> int:
    return np.from_dlpack(variable.value.read_value()).ctypes.data  # (`numpy()` would copy it)


def test_with_mmap_every_kernel_and_table_is_the_file_map_itself(tmp_path):
    """Kernels are kept `[out, in]` as on file, so they too are adopted (no transposing copy)."""
    build("TFXLMRobertaForMaskedLM", seed=14, intermediate_size=64).save_pretrained(tmp_path)
    model = xlmr_tf.TFXLMRobertaForMaskedLM.from_pretrained(tmp_path, mmap=True)
    (start, _), *_ = _mapped_ranges((tmp_path / "model.safetensors").resolve())
    _, _, data_start = safetensors.read_header(tmp_path / "model.safetensors")
    header = json.loads((tmp_path / "model.safetensors").read_bytes()[8:data_start].decode())
    adopted_kernels = 0
    for variable in model.weights:
        (name,) = model.to_canonical({variable.path.split("/", 1)[1]: np.empty((0, 0))})
        address = start + data_start + header[name]["data_offsets"][0]
        if address % checkpoint_io.ALIGNMENT:  # a small tensor before it left it off the boundary
            continue
        assert _storage_address(variable) == address, f"{name} was copied"
        adopted_kernels += variable.path.endswith("/kernel")
    assert adopted_kernels >= 6 * model.config.num_hidden_layers  # q k v, attention out, in, out
    np.testing.assert_array_equal(  # and it computes with it: the same outputs as a copied load
        model(token_ids()).logits,
        xlmr_tf.TFXLMRobertaForMaskedLM.from_pretrained(tmp_path)(token_ids()).logits,
    )


def test_training_writes_stay_private_and_never_reach_the_file(tmp_path):
    build("TFXLMRobertaModel", seed=15).save_pretrained(tmp_path)
    before = (tmp_path / "model.safetensors").read_bytes()
    model = xlmr_tf.TFXLMRobertaModel.from_pretrained(tmp_path, mmap=True)
    table = model.roberta.embeddings.word_embeddings.table
    table.assign_add(tf.ones_like(table))  # an in-place update of the adopted buffer
    kernel = model.roberta.encoder.layer[0].attention.self.query.kernel
    kernel.assign_sub(tf.ones_like(kernel))
    on_file = load_checkpoint(tmp_path)
    np.testing.assert_array_equal(np.asarray(table), on_file["embeddings.word_embeddings.weight"] + 1)
    assert (tmp_path / "model.safetensors").read_bytes() == before
    reloaded = xlmr_tf.TFXLMRobertaModel.from_pretrained(tmp_path)
    np.testing.assert_array_equal(
        np.asarray(reloaded.roberta.embeddings.word_embeddings.table),
        on_file["embeddings.word_embeddings.weight"],
    )


# One of each kind the initialisation treats differently.
DROPPED = {
    "embeddings.word_embeddings.weight": "table",
    "encoder.layer.0.attention.self.query.weight": "kernel",
    "encoder.layer.1.output.dense.bias": "bias",
    "encoder.layer.0.output.LayerNorm.weight": "ones",
    "encoder.layer.0.output.LayerNorm.bias": "bias",
}


@pytest.mark.parametrize("head", HEADS)
def test_a_partial_checkpoint_draws_what_it_lacks_and_loads_the_rest(head, tmp_path):
    model = build(head, seed=16)
    prefix = "" if head == "TFXLMRobertaModel" else "roberta."
    dropped = {prefix + name: kind for name, kind in DROPPED.items()}
    state = {name: a for name, a in model.canonical_state().items() if name not in dropped}
    save_checkpoint(tmp_path, state, model.config)
    loaded, info = getattr(xlmr_tf, head).from_pretrained(tmp_path, output_loading_info=True)
    assert sorted(info["missing_keys"]) == sorted(dropped)
    ours = loaded.canonical_state()
    std = loaded.config.initializer_range
    for name, kind in dropped.items():
        value = ours[name]
        assert np.all(np.isfinite(value)), name
        if kind in ("table", "kernel"):
            assert 0.8 * std < value.std() < 1.2 * std, name
            if kind == "table":
                assert not np.any(value[PAD]), "the pad row starts at zero"
        else:
            np.testing.assert_array_equal(value, np.ones_like(value) if kind == "ones" else 0 * value)
    _assert_state_equals_file(loaded, tmp_path, skip=dropped)


@pytest.mark.parametrize("head", ["TFXLMRobertaModel", "TFXLMRobertaForSequenceClassification"])
def test_building_without_weights_still_draws_them_at_random(head):
    first, second = build(head, seed=1), build(head, seed=2)
    std = first.config.initializer_range
    for model in (first, second):
        table = np.asarray(model.roberta.embeddings.word_embeddings.table)
        assert 0.8 * std < table.std() < 1.2 * std
        assert not np.any(table[PAD]) and np.all(np.any(np.delete(table, PAD, axis=0), axis=1))
        kernel = np.asarray(model.roberta.encoder.layer[1].intermediate.dense.kernel)
        assert 0.8 * std < kernel.std() < 1.2 * std
        assert not np.any(np.asarray(model.roberta.encoder.layer[1].intermediate.dense.bias))
    assert not np.array_equal(
        np.asarray(first.roberta.encoder.layer[0].intermediate.dense.kernel),
        np.asarray(second.roberta.encoder.layer[0].intermediate.dense.kernel),
    )


def test_building_and_loading_never_write_a_variable_in_place(tmp_path, monkeypatch):
    """A scatter or slice write switches a TF variable to copy-on-read mode for good: every later
    dense read (each embedding lookup) would copy the whole table."""
    build("TFXLMRobertaForMaskedLM", seed=17).save_pretrained(tmp_path)
    from tensorflow.python.ops import resource_variable_ops

    variable_class = resource_variable_ops.BaseResourceVariable

    def refuse(*args, **kwargs):
        raise AssertionError("a sparse write into a variable")

    for method in ("scatter_update", "scatter_nd_update", "_strided_slice_assign", "sparse_read"):
        monkeypatch.setattr(variable_class, method, refuse)
    model = build("TFXLMRobertaForMaskedLM", seed=18)  # random: the pad row is zeroed on the value
    loaded = xlmr_tf.TFXLMRobertaForMaskedLM.from_pretrained(tmp_path)
    partial = xlmr_tf.TFXLMRobertaForSequenceClassification.from_pretrained(tmp_path)  # draws a head
    for m in (model, loaded, partial):
        m(token_ids())


def test_cast_tensors_are_read_in_row_blocks_to_the_same_weights(tmp_path, monkeypatch):
    model = build("TFXLMRobertaForTokenClassification", seed=19, tie_word_embeddings=False)
    state = {name: array.astype(BFLOAT16) for name, array in model.canonical_state().items()}
    save_checkpoint(tmp_path, state, model.config)  # cast on loading: read in blocks of rows
    monkeypatch.setattr(checkpoint_io, "ASSIGN_BLOCK_BYTES", 300)
    loaded = xlmr_tf.TFXLMRobertaForTokenClassification.from_pretrained(tmp_path)
    _assert_state_equals_file(loaded, tmp_path)


def test_a_copied_tensor_is_read_straight_into_the_variable_buffer(tmp_path, monkeypatch):
    build("TFXLMRobertaModel", seed=20).save_pretrained(tmp_path)
    path = tmp_path / "model.safetensors"
    tensors = safetensors.read(path, mmap=False)
    table = tensors["embeddings.word_embeddings.weight"]
    out = np.empty(table.shape, table.dtype)
    table.read_into(out)
    expected = load_checkpoint(tmp_path)
    np.testing.assert_array_equal(out, expected["embeddings.word_embeddings.weight"])
    monkeypatch.setattr(np, "fromfile", lambda *a, **k: pytest.fail("read through an intermediate array"))
    ours = xlmr_tf.TFXLMRobertaModel.from_pretrained(tmp_path).canonical_state()
    assert sorted(ours) == sorted(expected)
    for name, array in expected.items():
        np.testing.assert_array_equal(ours[name], array, err_msg=name)
    with open(path, "r+b") as f:  # the file shrinks after its header was read
        f.truncate(path.stat().st_size - 4)
    with pytest.raises(CheckpointError, match="truncated"):
        tensors[list(tensors)[-1]].read_into(np.empty(tensors[list(tensors)[-1]].shape, np.float32))


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("overrides", [{}, {"position_embedding_type": "relative_key_query"}])
def test_variables_are_built_from_the_config_as_a_first_call_would_build_them(head, overrides, monkeypatch):
    """No eager dummy call at construction: the same variables (paths, shapes, order) without it."""
    config = config_for(head, **overrides)
    built = getattr(xlmr_tf, head)(config)
    monkeypatch.setattr(pretrained, "build_variables", lambda *args: False)  # the dummy call's way
    called = getattr(xlmr_tf, head)(config)
    assert [(v.path.split("/", 1)[1], tuple(v.shape)) for v in built.weights] == [
        (v.path.split("/", 1)[1], tuple(v.shape)) for v in called.weights
    ]
    monkeypatch.undo()
    monkeypatch.setattr(type(built), "call", lambda *args, **kwargs: pytest.fail("the model ran"))
    getattr(xlmr_tf, head)(config)  # builds without calling the model


def test_keras_weight_files_keep_keras_in_out_kernels_so_older_files_load_the_same(tmp_path):
    """`.keras` / `.weights.h5` files hold Keras's `[in, out]` kernel, as before the `[out, in]`
    variables: a file written by Keras's own Dense (what older files hold) loads into ours."""
    inputs = tf.constant(np.random.default_rng(0).standard_normal((3, 5, 16)), tf.float32)
    theirs = keras.Sequential([keras.Input((5, 16)), keras.layers.Dense(8)])
    theirs.save_weights(tmp_path / "keras.weights.h5")
    ours = keras.Sequential([keras.Input((5, 16)), Dense(8)])
    ours.load_weights(tmp_path / "keras.weights.h5")
    np.testing.assert_allclose(ours(inputs), theirs(inputs), rtol=1e-6, atol=1e-6)
    assert ours.layers[0].kernel.shape == (8, 16)
    ours.save_weights(tmp_path / "ours.weights.h5")
    with h5py.File(tmp_path / "ours.weights.h5") as saved, h5py.File(tmp_path / "keras.weights.h5") as old:
        assert [saved[name].shape for name in _datasets(saved)] == [
            old[name].shape for name in _datasets(old)
        ]


def _datasets(h5) -> list[str]:
    names = []
    h5.visititems(lambda name, item: names.append(name) if isinstance(item, h5py.Dataset) else None)
    return names


@pytest.mark.parametrize("option", ["quantize", "enable_lora"])
def test_keras_options_that_assume_in_out_kernels_are_refused_in_one_line(option):
    layer = Dense(8)
    layer.build((None, 16))
    with pytest.raises(UnsupportedLayerOption, match=r"^[^\n]*\[out, in\][^\n]*$"):
        getattr(layer, option)("int8" if option == "quantize" else 4)

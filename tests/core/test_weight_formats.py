"""The per-format readers and writers of `xlmr_core.formats`, against each format's own tools.

`pytorch_model.bin` is read and written without torch (torch, where installed, is the
independent check on both sides); a hostile pickle runs nothing; hostile headers of any
format are one-line `CheckpointError`s.
"""

from __future__ import annotations

import json
import os
import pickle
import struct
import sys
import zipfile

import ml_dtypes
import numpy as np
import pytest

from xlmr_core import checkpoint as ckpt
from xlmr_core.formats import safetensors, torch_pickle
from xlmr_core.formats.base import as_lazy


def assert_one_line(error: BaseException, *fragments: str) -> None:
    message = str(error)
    assert "\n" not in message and len(message) <= 300, message
    for fragment in fragments:
        assert fragment in message, message


def assert_same(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b)
    for name in a:
        assert a[name].dtype == b[name].dtype and a[name].shape == b[name].shape, name
        np.testing.assert_array_equal(np.asarray(a[name]), np.asarray(b[name]), err_msg=name)


# ------------------------------------------------------------------ pytorch_model.bin
def test_our_bin_round_trips_bit_exactly_without_torch(tmp_path, state):
    torch_pickle.write(
        tmp_path / "pytorch_model.bin", ckpt.as_lazy(state) if hasattr(ckpt, "as_lazy") else {}
    )
    assert_same({n: t.load() for n, t in torch_pickle.read(tmp_path / "pytorch_model.bin").items()}, state)


def _to_torch(torch, array):
    if array.dtype == ml_dtypes.bfloat16:
        return torch.from_numpy(array.view(np.int16).copy()).view(torch.bfloat16)
    return torch.from_numpy(array.copy())


def _from_torch(tensor):
    import torch

    if tensor.dtype == torch.bfloat16:
        return tensor.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    return tensor.numpy()


def test_torch_load_reads_our_bin_with_its_weights_only_loader(tmp_path, state):
    torch = pytest.importorskip("torch")
    ckpt.write_weights(tmp_path, state, "torch")
    loaded = torch.load(tmp_path / "pytorch_model.bin", weights_only=True, mmap=True)
    assert_same({name: _from_torch(tensor) for name, tensor in loaded.items()}, state)


def test_we_read_what_torch_save_writes_views_and_strides_included(tmp_path, state):
    torch = pytest.importorskip("torch")
    tensors = {name: _to_torch(torch, array) for name, array in state.items()}
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    tensors["transposed"] = base.t()  # a non-contiguous view
    tensors["rows"] = base[1:3]  # a view at an offset into a shared storage
    tensors["tied"] = tensors["roberta.embeddings.word_embeddings.weight"]
    torch.save(tensors, tmp_path / "pytorch_model.bin")
    ours = {n: t.load() for n, t in torch_pickle.read(tmp_path / "pytorch_model.bin").items()}
    assert_same(ours, {name: _from_torch(t.contiguous()) for name, t in tensors.items()})


def test_a_state_dict_wrapper_and_the_legacy_stream_format_are_read(tmp_path):
    torch = pytest.importorskip("torch")
    weights = {"w": torch.randn(3, 2)}
    torch.save({"state_dict": weights}, tmp_path / "wrapped.bin")
    torch.save(weights, tmp_path / "legacy.bin", _use_new_zipfile_serialization=False)
    for name in ("wrapped.bin", "legacy.bin"):
        read = torch_pickle.read(tmp_path / name)
        np.testing.assert_array_equal(read["w"].load(), weights["w"].numpy())


def _hostile_pickle(marker) -> bytes:
    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    return pickle.dumps({"w": Payload()}, protocol=2)


@pytest.mark.parametrize("layout", ["zip", "legacy stream"])
def test_a_hostile_pickle_runs_nothing_and_is_refused_naming_the_global(tmp_path, layout):
    marker = tmp_path / "marker"
    data = _hostile_pickle(marker)
    path = tmp_path / "pytorch_model.bin"
    if layout == "zip":
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("archive/data.pkl", data)
    else:
        path.write_bytes(data)
    assert pickle.loads(data) == {"w": 0} and marker.exists()  # the payload is real ...
    marker.unlink()
    with pytest.raises(ckpt.CheckpointError) as error:
        ckpt.load_checkpoint(tmp_path)
    assert not marker.exists()  # ... and our reader ran none of it
    assert_one_line(error.value, "pytorch_model.bin", "refused", "posix.system")


@pytest.mark.parametrize("cut", [0.5, 0.9])
def test_a_truncated_bin_is_a_one_line_error(tmp_path, state, cut):
    ckpt.write_weights(tmp_path, state, "torch")
    path = tmp_path / "pytorch_model.bin"
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(ckpt.CheckpointError) as error:
        ckpt.load_checkpoint(tmp_path)
    assert_one_line(error.value, "pytorch_model.bin")


def test_sharded_bin_round_trips_with_its_index(tmp_path, state):
    files = ckpt.write_weights(tmp_path, state, "torch", max_shard_size=300)
    assert "pytorch_model.bin.index.json" in files and len(files) > 2
    assert ckpt.detect_format(tmp_path) == ("torch", tmp_path / "pytorch_model.bin.index.json")
    assert_same(ckpt.load_checkpoint(tmp_path), state)


# ------------------------------------------------------------------ hostile safetensors headers
def _header_file(path, header: bytes, data: bytes = b"") -> None:
    path.write_bytes(struct.pack("<Q", len(header)) + header + data)


@pytest.mark.parametrize(
    ("header", "fragment"),
    [
        (b'{"w": {"dtype": "F32", "shape": [1e400], "data_offsets": [0, 4]}}', "shape"),
        (b'{"w": {"dtype": "F32", "shape": [100000000000000000000], "data_offsets": [0, 4]}}', "bytes"),
        (b'{"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 100000000000000000000]}}', "bytes"),
        (b"[" * 5000 + b"]" * 5000, "nested too deeply"),
        (
            json.dumps({"w": {"dtype": "F32", "shape": [1] * 1000, "data_offsets": [0, 4]}}).encode(),
            "1000 dim",
        ),
        (
            json.dumps({"w" * 5000: {"dtype": "X" * 5000, "shape": [], "data_offsets": [0, 4]}}).encode(),
            "dtype",
        ),
        (b'{"w": {"dtype": "F32", "shape": [true], "data_offsets": [0, 4]}}', "shape"),
        (b'{"__metadata__": [], "w": 1}', "__metadata__"),
    ],
)
def test_hostile_safetensors_headers_are_one_line_errors(tmp_path, header, fragment):
    _header_file(tmp_path / "model.safetensors", header, bytes(8))
    with pytest.raises(ckpt.CheckpointError) as error:
        ckpt.load_checkpoint(tmp_path)
    assert_one_line(error.value, "model.safetensors", fragment)


def test_a_header_over_100_mb_is_refused_before_it_is_read(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(struct.pack("<Q", 100_000_001) + b"{}")
    with pytest.raises(ckpt.CheckpointError, match="at most 100 MB"):
        safetensors.read_header(tmp_path / "model.safetensors")


def test_a_shard_index_pointing_outside_the_directory_is_refused(tmp_path, state):
    ckpt.save_checkpoint(tmp_path, state, max_shard_size=300)
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    index["weight_map"]["lm_head.bias"] = "../elsewhere.safetensors"
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(ckpt.CheckpointError) as error:
        ckpt.load_checkpoint(tmp_path)
    assert_one_line(error.value, "outside the checkpoint directory")


# ------------------------------------------------------------------ h5 and msgpack
def test_h5_round_trips_through_h5py_with_the_reference_layout(tmp_path):
    h5py = pytest.importorskip("h5py")
    rng = np.random.default_rng(1)
    state = {
        "roberta.embeddings.word_embeddings.weight": rng.standard_normal((10, 4)).astype(np.float32),
        "roberta.encoder.layer.0.attention.self.query.weight": rng.standard_normal((4, 6)).astype(np.float32),
        "roberta.encoder.layer.0.attention.self.query.bias": rng.standard_normal(4).astype(np.float32),
        "lm_head.bias": rng.standard_normal(10).astype(np.float32),
    }
    ckpt.write_weights(tmp_path, state, "tf", architecture="XLMRobertaForMaskedLM")
    with h5py.File(tmp_path / "tf_model.h5") as h5:
        kernel = h5["roberta"][
            "tfxlm_roberta_for_masked_lm/roberta/encoder/layer_._0/attention/self/query/kernel:0"
        ]
        np.testing.assert_array_equal(
            kernel[()], state["roberta.encoder.layer.0.attention.self.query.weight"].T
        )
    back = ckpt.load_checkpoint(tmp_path)
    assert set(back) == set(state)
    for name in state:
        np.testing.assert_array_equal(back[name], state[name])


def test_msgpack_round_trips_and_matches_flax_serialization(tmp_path):
    rng = np.random.default_rng(2)
    state = {
        "roberta.encoder.layer.1.output.dense.weight": rng.standard_normal((3, 5)).astype(np.float32),
        "roberta.encoder.layer.1.output.LayerNorm.weight": rng.standard_normal(3).astype(ml_dtypes.bfloat16),
    }
    ckpt.write_weights(tmp_path, state, "flax")
    back = ckpt.load_checkpoint(tmp_path)
    for name in state:
        assert back[name].dtype == state[name].dtype
        np.testing.assert_array_equal(back[name], state[name])
    serialization = pytest.importorskip("flax.serialization")
    tree = serialization.msgpack_restore((tmp_path / "flax_model.msgpack").read_bytes())
    kernel = tree["roberta"]["encoder"]["layer"]["1"]["output"]["dense"]["kernel"]
    np.testing.assert_array_equal(kernel, state["roberta.encoder.layer.1.output.dense.weight"].T)


@pytest.mark.parametrize("cut", [10, 100, -3])
def test_a_truncated_msgpack_is_a_one_line_error(tmp_path, cut):
    ckpt.write_weights(tmp_path, {"lm_head.bias": np.ones(40, np.float32)}, "flax")
    path = tmp_path / "flax_model.msgpack"
    path.write_bytes(path.read_bytes()[:cut])
    with pytest.raises(ckpt.CheckpointError) as error:
        ckpt.load_checkpoint(tmp_path)
    assert_one_line(error.value, "flax_model.msgpack")


def test_reading_an_h5_without_h5py_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "h5py", None)  # makes `import h5py` fail, as when absent
    (tmp_path / "tf_model.h5").write_bytes(b"x")
    with pytest.raises(ckpt.MissingDependencyError) as error:
        ckpt.load_checkpoint(tmp_path)
    assert_one_line(error.value, "tf_model.h5", "xlmr[tf]")


def test_a_corrupt_tensor_record_is_a_one_line_error_when_it_is_read(tmp_path, state):
    ckpt.write_weights(tmp_path, state, "torch")
    path = tmp_path / "pytorch_model.bin"
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("archive/data/0")
    data = bytearray(path.read_bytes())
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)  # the record's first byte
    data[start : start + 4] = b"\xff\xff\xff\xff"  # the CRC no longer matches
    path.write_bytes(bytes(data))
    with pytest.raises(ckpt.CheckpointError) as error:
        ckpt.load_checkpoint(tmp_path)
    assert_one_line(error.value, "pytorch_model.bin", "corrupt")


@pytest.mark.parametrize("fmt", ["safetensors", "torch", "tf", "flax"])
def test_row_blocks_read_alone_equal_the_whole_tensor(tmp_path, fmt):
    if fmt == "tf":
        pytest.importorskip("h5py")
    table = np.arange(7 * 5, dtype=np.float32).reshape(7, 5)
    ckpt.write_weights(
        tmp_path, {"roberta.embeddings.word_embeddings.weight": table, "lm_head.bias": table[0]}, fmt
    )
    with ckpt.open_checkpoint(tmp_path, mmap=False) as checkpoint:
        tensor = checkpoint.tensors["roberta.embeddings.word_embeddings.weight"]
        for start, stop in [(0, 3), (3, 7), (5, 100)]:
            np.testing.assert_array_equal(tensor.load_rows(start, stop), table[start:stop])


@pytest.mark.parametrize("parallel_bytes", [1 << 40, 64], ids=["one read", "parallel parts"])
def test_read_into_fills_the_buffer_with_the_tensor_in_one_or_several_parts(
    tmp_path, monkeypatch, parallel_bytes
):
    """Big tensors are read by several threads, each its own byte range; the bytes are the same,
    and a file that shrinks after its header was read is still a one-line error."""
    monkeypatch.setattr(safetensors, "PARALLEL_READ_BYTES", parallel_bytes)
    table = np.arange(4 * 257, dtype=np.float32).reshape(257, 4)  # parts that split rows
    path = tmp_path / "model.safetensors"
    safetensors.write(path, as_lazy({"before": np.ones(3, np.float32), "table": table}))
    tensor = safetensors.read(path, mmap=False)["table"]
    out = np.empty(table.shape, np.float32)
    tensor.read_into(out)
    np.testing.assert_array_equal(out, table)
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size - 4)
    with pytest.raises(ckpt.CheckpointError, match="truncated safetensors file"):
        tensor.read_into(out)

"""Checkpoint directories and safetensors files: single and sharded, memory maps, corruption, atomic saves."""

import json
import os
import struct

import ml_dtypes
import numpy as np
import pytest

from xlmr_core import XLMRobertaConfig
from xlmr_core import checkpoint as ckpt
from xlmr_core.formats import safetensors


def read_arrays(path):
    return {name: tensor.load() for name, tensor in safetensors.read(path).items()}


def assert_same_state(a, b):
    assert list(a) == list(b) or set(a) == set(b)
    for name in a:
        assert a[name].dtype == b[name].dtype, name
        assert a[name].shape == b[name].shape, name
        np.testing.assert_array_equal(np.asarray(a[name]), np.asarray(b[name]), err_msg=name)


def test_single_file_round_trip_is_bit_exact(tmp_path, state):
    ckpt.save_checkpoint(tmp_path / "c", state)
    assert (tmp_path / "c" / "model.safetensors").is_file()
    assert_same_state(ckpt.load_checkpoint(tmp_path / "c"), state)


def test_config_is_saved_beside_the_weights(tmp_path, state):
    config = XLMRobertaConfig(hidden_size=8, num_attention_heads=2)
    ckpt.save_checkpoint(tmp_path / "c", state, config)
    assert XLMRobertaConfig.from_pretrained(tmp_path / "c") == config


def test_reads_are_memory_mapped_and_copy_on_write(tmp_path, state):
    ckpt.save_checkpoint(tmp_path, state)
    loaded = ckpt.load_checkpoint(tmp_path)
    array = loaded["roberta.embeddings.word_embeddings.weight"]
    assert isinstance(array.base, np.memmap) or isinstance(array, np.memmap)
    array[0, 0] = 1234.0  # must not write through to the file
    again = ckpt.load_checkpoint(tmp_path, mmap=False)
    assert (
        again["roberta.embeddings.word_embeddings.weight"][0, 0]
        == state["roberta.embeddings.word_embeddings.weight"][0, 0]
    )


def test_sharded_save_splits_by_size_and_round_trips(tmp_path, state):
    files = ckpt.save_checkpoint(tmp_path, state, max_shard_size=1000)
    shards = sorted(p.name for p in tmp_path.glob("model-*.safetensors"))
    assert len(shards) > 1 and not (tmp_path / "model.safetensors").exists()
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"]) == set(state)
    assert index["metadata"]["total_size"] == sum(a.nbytes for a in state.values())
    for shard in shards:  # no shard over the limit unless it holds one tensor alone
        tensors = read_arrays(tmp_path / shard)
        assert len(tensors) == 1 or sum(a.nbytes for a in tensors.values()) <= 1000
    assert {p.name for p in files} >= set(shards)
    assert_same_state(ckpt.load_checkpoint(tmp_path), state)


@pytest.mark.parametrize(
    ("text", "size"), [("2GB", 2 * 10**9), ("500MiB", 500 * 2**20), ("10kb", 10_000), (77, 77)]
)
def test_shard_sizes_are_read_like_the_reference(text, size):
    assert ckpt.parse_size(text) == size


def test_an_unreadable_shard_size_is_refused():
    with pytest.raises(ValueError, match="cannot read a size"):
        ckpt.parse_size("lots")


def test_resaving_unsharded_removes_stale_shards(tmp_path, state):
    ckpt.save_checkpoint(tmp_path, state, max_shard_size=1000)
    ckpt.save_checkpoint(tmp_path, state)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]


def test_files_interoperate_with_the_safetensors_library(tmp_path, state):
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    plain = {k: v for k, v in state.items() if v.dtype != ml_dtypes.bfloat16}
    ckpt.save_checkpoint(tmp_path / "ours", plain)
    assert_same_state(safetensors_numpy.load_file(tmp_path / "ours" / "model.safetensors"), plain)
    safetensors_numpy.save_file(plain, tmp_path / "theirs.safetensors", metadata={"format": "pt"})
    assert_same_state(read_arrays(tmp_path / "theirs.safetensors"), plain)


def test_bfloat16_interoperates_with_safetensors_torch(tmp_path, state):
    torch = pytest.importorskip("torch")
    safetensors_torch = pytest.importorskip("safetensors.torch")
    ckpt.save_checkpoint(tmp_path, state)
    tensors = safetensors_torch.load_file(tmp_path / "model.safetensors")
    bias = "roberta.encoder.layer.0.attention.self.query.bias"
    assert tensors[bias].dtype == torch.bfloat16
    np.testing.assert_array_equal(tensors[bias].float().numpy(), state[bias].astype(np.float32))


# ------------------------------------------------------------------ bad files
def _corrupt(path, how):
    data = bytearray(path.read_bytes())
    if how == "truncated":
        data = data[: len(data) - 40]
    elif how == "empty":
        data = b""
    elif how == "header_length":
        data[:8] = struct.pack("<Q", 10**12)
    elif how == "header_past_the_end":
        data[:8] = struct.pack("<Q", len(data))
    elif how == "header_json":
        data[10:14] = b"\xff\xfe{{"
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("truncated", "truncated safetensors file"),
        ("empty", "truncated safetensors file"),
        ("header_length", "at most 100 MB"),
        ("header_past_the_end", "header claims"),
        ("header_json", "not valid JSON"),
    ],
)
def test_corrupt_files_give_a_clear_error(tmp_path, state, how, message):
    ckpt.save_checkpoint(tmp_path, state)
    _corrupt(tmp_path / "model.safetensors", how)
    with pytest.raises(ckpt.CheckpointError, match=message):
        ckpt.load_checkpoint(tmp_path)


def test_inconsistent_offsets_are_refused(tmp_path):
    header = json.dumps({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 12]}}).encode()
    (tmp_path / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + bytes(16))
    with pytest.raises(ckpt.CheckpointError, match="should take 16 bytes"):
        ckpt.load_checkpoint(tmp_path)


def test_unknown_dtype_is_refused(tmp_path):
    header = json.dumps({"w": {"dtype": "F8_E4M3", "shape": [4], "data_offsets": [0, 4]}}).encode()
    (tmp_path / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + bytes(4))
    with pytest.raises(ckpt.CheckpointError, match="F8_E4M3"):
        ckpt.load_checkpoint(tmp_path)


def test_missing_shard_is_named(tmp_path, state):
    ckpt.save_checkpoint(tmp_path, state, max_shard_size=1000)
    victim = sorted(tmp_path.glob("model-*.safetensors"))[1]
    victim.unlink()
    with pytest.raises(FileNotFoundError, match=victim.name):
        ckpt.load_checkpoint(tmp_path)


def test_missing_directory_and_missing_weights_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ckpt.load_checkpoint(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="no weights file"):
        ckpt.load_checkpoint(tmp_path)


# ------------------------------------------------------------------ atomicity
class Boom(Exception):
    pass


@pytest.mark.parametrize("interrupt", [Boom, KeyboardInterrupt])
def test_interrupted_save_to_a_new_directory_leaves_nothing(tmp_path, state, monkeypatch, interrupt):
    calls = []

    def failing_write(path, tensors, metadata=None, progress=None):
        calls.append(path)
        path.write_bytes(b"partial")
        if len(calls) == 2:
            raise interrupt()

    monkeypatch.setattr(safetensors, "write", failing_write)
    with pytest.raises(interrupt):
        ckpt.save_checkpoint(tmp_path / "new", state, max_shard_size=1000)
    assert list(tmp_path.iterdir()) == []


def test_interrupted_save_over_an_old_checkpoint_keeps_the_old_one(tmp_path, state, monkeypatch):
    ckpt.save_checkpoint(tmp_path, state)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def failing_write(path, tensors, metadata=None, progress=None):
        path.write_bytes(b"partial")
        raise Boom()

    monkeypatch.setattr(safetensors, "write", failing_write)
    changed = {k: v * 2 for k, v in state.items()}
    with pytest.raises(Boom):
        ckpt.save_checkpoint(tmp_path, changed, XLMRobertaConfig())
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_unsavable_values_are_refused_before_anything_is_written(tmp_path):
    with pytest.raises(TypeError, match="not an array"):
        ckpt.save_checkpoint(tmp_path / "c", {"w": [1, 2, 3]})
    with pytest.raises(TypeError, match="safetensors cannot hold"):
        ckpt.save_checkpoint(tmp_path / "c", {"w": np.zeros(2, dtype=np.complex64)})
    assert not (tmp_path / "c").exists()
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".partial")]


def test_safetensors_wins_over_other_formats(tmp_path, state):
    ckpt.write_weights(tmp_path, {"other": np.zeros(1, np.float32)}, "torch")
    ckpt.save_checkpoint(tmp_path, state)
    assert set(ckpt.load_checkpoint(tmp_path)) == set(state)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("pytorch_model.bin", "corrupt or truncated torch file"),
        ("tf_model.h5", "not a readable HDF5 file"),
        ("flax_model.msgpack", "msgpack"),
    ],
)
def test_a_garbage_weights_file_of_any_format_is_a_one_line_error_naming_it(tmp_path, name, message):
    if name.endswith(".h5"):
        pytest.importorskip("h5py")
    (tmp_path / name).write_bytes(b"\x93garbage")
    with pytest.raises(ckpt.CheckpointError, match=message) as error:
        ckpt.load_checkpoint(tmp_path)
    assert name in str(error.value) and "\n" not in str(error.value) and len(str(error.value)) <= 300


def test_a_fairseq_directory_is_named_as_such(tmp_path):
    (tmp_path / "model.pt").write_bytes(b"x")
    with pytest.raises(ckpt.UnsupportedCheckpointError, match="from-fairseq"):
        ckpt.load_checkpoint(tmp_path)


@pytest.mark.parametrize("existing", [False, True], ids=["new directory", "over an old checkpoint"])
def test_saved_files_get_ordinary_permissions_not_private_temporary_ones(tmp_path, state, existing):
    directory = tmp_path / "ckpt"
    if existing:
        ckpt.save_checkpoint(directory, state, XLMRobertaConfig())
    old_umask = os.umask(0o022)
    try:
        ckpt.save_checkpoint(directory, state, XLMRobertaConfig())
    finally:
        os.umask(old_umask)
    assert directory.stat().st_mode & 0o777 == 0o755
    assert {p.name: p.stat().st_mode & 0o777 for p in directory.iterdir()} == {
        p.name: 0o644 for p in directory.iterdir()
    }

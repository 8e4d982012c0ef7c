"""One reader and one writer per weight-file format, all in canonical names and layout.

| module         | file                                              | needs                     |
|----------------|---------------------------------------------------|---------------------------|
| `safetensors`  | `model.safetensors` (+ index and shards)          | numpy only                |
| `torch_pickle` | `pytorch_model.bin` (+ index), fairseq `model.pt` | numpy only; no torch      |
| `keras_h5`     | `tf_model.h5` (the reference's Keras layout)      | h5py (`xlmr[tf]`)         |
| `flax_msgpack` | `flax_model.msgpack`                              | numpy only (parsed here)  |

Readers return `{name: LazyTensor}`: shape and dtype come from the file's header, the bytes
are read when `load()` is called, so loading and converting go one tensor at a time. The
directory level (which file, which order, sharding, atomic saves) is `xlmr_core.checkpoint`.
"""

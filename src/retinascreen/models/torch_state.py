"""Read a PyTorch state dict (``.pth``) as NumPy arrays, without PyTorch and without trusting it.

PyTorch's **legacy** serialisation (before 1.6) is a sequence of pickles (magic number, protocol
version, system info, the object, the storage keys) followed by each storage's raw bytes. A
plain ``pickle.load`` would run whatever the file names, so the object pickle is read with
:class:`_StateDictUnpickler`, which admits only the globals a state dict of tensors needs: the
ordered dict, ``torch._utils._rebuild_tensor(_v2)`` and the typed storages. Anything else
(``os.system``, ``builtins.eval``, a custom class) raises :class:`ModelError` before it can run.
The tensors are rebuilt as NumPy views of the storages (offset, shape and strides as saved).
"""

from __future__ import annotations

import io
import pickle
import struct
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from retinascreen.errors import ModelError

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001

STORAGE_DTYPES: dict[str, np.dtype] = {
    "FloatStorage": np.dtype("<f4"),
    "DoubleStorage": np.dtype("<f8"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}


@dataclass(frozen=True)
class _StorageType:
    dtype: np.dtype


@dataclass
class _Storage:
    dtype: np.dtype
    numel: int
    data: np.ndarray | None = None


@dataclass(frozen=True)
class _TensorRef:
    storage: _Storage
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]

    def array(self) -> np.ndarray:
        assert self.storage.data is not None
        itemsize = self.storage.dtype.itemsize
        if len(self.shape) != len(self.stride) or any(s < 0 for s in self.stride):
            raise ModelError("a tensor of the weights file has a malformed shape or stride")
        if any(n == 0 for n in self.shape):
            return np.zeros(self.shape, self.storage.dtype)
        spans = zip(self.shape, self.stride, strict=True)
        needed = self.offset + sum((n - 1) * s for n, s in spans) + 1
        if self.offset < 0 or needed > self.storage.numel:
            raise ModelError("a tensor of the weights file lies outside its storage")
        view = np.lib.stride_tricks.as_strided(
            self.storage.data[self.offset :],
            shape=self.shape,
            strides=tuple(s * itemsize for s in self.stride),
            writeable=False,
        )
        return np.array(view)  # a contiguous copy: the storage may be shared


def _rebuild_tensor(
    storage: _Storage, offset: int, size: tuple[int, ...], stride: tuple[int, ...], *_: Any
) -> _TensorRef:
    return _TensorRef(storage, int(offset), tuple(int(n) for n in size), tuple(stride))


class _StateDictUnpickler(pickle.Unpickler):
    """Unpickles a state dict; refuses every global but the few a state dict needs."""

    def __init__(self, file: IO[bytes]) -> None:
        super().__init__(file, encoding="latin1")
        self.storages: dict[str, _Storage] = {}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        if module == "torch._utils" and name in ("_rebuild_tensor", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(STORAGE_DTYPES[name])
        raise ModelError(
            f"the weights file names {module}.{name}, which a state dict of tensors never "
            "needs: refused (it could run code)"
        )

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise ModelError(f"unexpected persistent reference in the weights file: {pid!r}")
        _, storage_type, key, _location, numel = pid[:5]
        if not isinstance(storage_type, _StorageType) or len(pid) > 5 and pid[5] is not None:
            raise ModelError("unsupported storage in the weights file (a view or unknown type)")
        key = str(key)
        if key not in self.storages:
            self.storages[key] = _Storage(storage_type.dtype, int(numel))
        return self.storages[key]


def _flatten(obj: Any, prefix: str = "") -> dict[str, np.ndarray]:
    """name -> array for a (possibly nested, e.g. ``{"state_dict": ...}``) dict of tensors."""
    out: dict[str, np.ndarray] = {}
    if isinstance(obj, dict):
        for key, value in obj.items():
            out.update(_flatten(value, f"{prefix}{key}."))
    elif isinstance(obj, _TensorRef):
        out[prefix[:-1]] = obj.array()
    return out


def _safe_load(stream: IO[bytes]) -> Any:
    """One plain-data pickle (numbers, strings, dicts): no global is admitted."""
    return _StateDictUnpickler(stream).load()


def read_legacy_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """The tensors of a legacy-format ``.pth`` file by name, as NumPy arrays."""
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == b"PK":
        raise ModelError(
            f"{path} uses PyTorch's zip serialisation; only the legacy format is read here"
        )
    stream = io.BytesIO(raw)
    try:
        if _safe_load(stream) != LEGACY_MAGIC:
            raise ModelError(f"{path} is not a PyTorch legacy weights file (no magic number)")
        if _safe_load(stream) != LEGACY_PROTOCOL:
            raise ModelError(f"{path}: unsupported PyTorch serialisation protocol")
        info = _safe_load(stream)
        if isinstance(info, dict) and not info.get("little_endian", True):
            raise ModelError(f"{path} was saved big-endian; not supported")
        unpickler = _StateDictUnpickler(stream)
        obj = unpickler.load()
        keys = _safe_load(stream)
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as exc:
        raise ModelError(f"{path} is not a readable PyTorch weights file: {exc}") from exc
    if not isinstance(keys, list):
        raise ModelError(f"{path}: malformed storage list")
    for key in keys:
        storage = unpickler.storages.get(str(key))
        if storage is None:
            raise ModelError(f"{path}: storage {key!r} is listed but never used")
        header = stream.read(8)
        if len(header) != 8:
            raise ModelError(f"{path} is cut short (storage {key})")
        (numel,) = struct.unpack("<q", header)
        nbytes = numel * storage.dtype.itemsize
        if numel != storage.numel or nbytes > len(raw) - stream.tell():
            raise ModelError(f"{path}: storage {key} does not match its declared size")
        start = stream.tell()
        storage.data = np.frombuffer(raw, storage.dtype, count=numel, offset=start)
        stream.seek(start + nbytes)
    if any(s.data is None for s in unpickler.storages.values()):
        raise ModelError(f"{path}: a storage has no data")
    return _flatten(obj)


__all__ = ["read_legacy_state_dict"]

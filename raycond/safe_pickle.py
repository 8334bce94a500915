"""A restricted unpickler for network files from untrusted sources.

`pickle.load` runs whatever a file asks for: any importable function can be called with any
arguments, and a StyleGAN-family network pickle also carries Python source that the trusting
loader executes. This unpickler turns a file into plain data without running code from it:

- only an explicit allow-list of globals resolves (containers, tensors through checked torch
  rebuild functions, numpy arrays/dtypes/scalars, `EasyDict`); every other global becomes an
  inert placeholder whose name is collected, and the load is refused naming all of them;
- `torch_utils.persistence` records are kept as `PersistentRecord` data (class name, module
  source, state); their source is never executed. `raycond.rebuild` turns recognised records
  into this project's own classes;
- `torch.nn` containers (ModuleList, ...) become `ModuleRecord` data for the same reason;
- length fields are checked against the real file size before anything is allocated, and the
  records that hold tensor storages are parsed here (never by a trusting torch.load), and the
  element count they claim must match the bytes present;
- what a small file can make this process hold is bounded: no allowed global allocates a size
  the file states (bytearray(n), empty numpy arrays), a tensor may not repeat its storage into
  more elements than it holds (stride-0 views), the count of refused globals, persistent records
  and distinct module sources is capped, and nesting deeper than `MAX_DEPTH` is refused, so that
  no later step recurses past Python's limit;
- torch's zip format (`.pt`) is read by the same unpickler (`restricted_load_torch_zip`): its
  entries must be stored uncompressed, so their size is the size on disk.

Errors: `UntrustedPickleError` only when loading would run code from the file (a global outside
the allow-list); `NetworkLoadError` (or `pickle.UnpicklingError`, which callers turn into one)
for data that is malformed or too large.
"""

from __future__ import annotations

import collections
import io
import pickle
import pickletools
import zipfile
from typing import Any

import numpy as np
import torch

import dnnlib

PERSISTENCE_ENTRY = "torch_utils.persistence._reconstruct_persistent_obj"
MAX_PERSISTENT_VERSION = 6
# Bounds on what a file may declare. A StyleGAN3 snapshot (G, D, G_ema) holds about 700 persistent
# records, 3 module sources of under 60 KB and nests about 20 levels.
MAX_DEPTH = 100                 # containers inside containers (records count as one level each)
MAX_RECORDS = 20000             # persistent records per file
MAX_SOURCES = 32                # distinct module sources per file
MAX_SOURCE_CHARS = 1 << 18      # characters of one module source (ours: under 50 KB)
MAX_REFUSED = 64                # distinct refused globals kept as placeholders (the rest share one)
MAX_REPEAT = 1 << 16            # elements a tensor may have beyond its storage (broadcast views)
_TRUST_HINT = "rerun with --trust-pickle (or answer Yes in the visualizer) only if you trust where the file came from"


class NetworkLoadError(ValueError):
    """A network file is missing, unreadable, or holds no network under the asked key."""


class UntrustedPickleError(NetworkLoadError):
    """The file needs code to be run to load; `names` lists what was found (globals, classes) so
    that a GUI can show them and ask before loading it with trust."""

    def __init__(self, names, path: str = "the file", detail: str = ""):
        self.names = sorted(set(names))
        self.path = path
        self.detail = detail
        shown = ", ".join(self.names[:8]) + (f" and {len(self.names) - 8} more" if len(self.names) > 8 else "")
        detail = f" ({detail})" if detail else ""
        super().__init__(f"{path} was not loaded: it contains code that would run on this machine: {shown}"
                         f"{detail}; {_TRUST_HINT}")


# ----------------------------------------------------------------------------- inert data types

class PersistentRecord:
    """A `torch_utils.persistence` object kept as data: what class it claims to be, the source of
    its module (never executed here), and its instance state."""

    def __init__(self, class_name: str, module_src: str, state: dict):
        self.class_name = class_name
        self.module_src = module_src
        self.state = state

    def __repr__(self):
        return f"PersistentRecord({self.class_name!r})"


class ModuleRecord:
    """A `torch.nn` container (ModuleList, ...) kept as data until it is matched against ours."""

    qualname = "torch.nn.Module"

    def __new__(cls, *args, **kwargs):
        obj = object.__new__(cls)
        obj.state = {}
        return obj

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        self.state = state if isinstance(state, dict) else {}

    def __repr__(self):
        return f"ModuleRecord({self.qualname!r})"


class _Refused:
    """Placeholder for a global outside the allow-list: calling or building it does nothing."""

    qualname = "?"

    def __new__(cls, *args, **kwargs):
        return object.__new__(cls)

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        pass

    def __setitem__(self, key, value):
        pass

    def append(self, value):
        pass

    def extend(self, values):
        pass


class FunctionReference:
    """A reference to one of this project's pure functions that network state may hold (the
    official Ray Conditioning networks keep their ray embedding as an attribute). Kept as a name:
    the file cannot call it."""

    def __init__(self, qualname: str):
        self.qualname = qualname

    def __call__(self, *args, **kwargs):
        raise pickle.UnpicklingError(f"the file calls {self.qualname}, which safe loading does not allow")

    def __repr__(self):
        return f"FunctionReference({self.qualname!r})"


# ----------------------------------------------------------------------------- checked rebuilds

_STORAGE_DTYPES = {"FloatStorage": torch.float32, "DoubleStorage": torch.float64, "HalfStorage": torch.float16,
                   "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
                   "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8,
                   "BoolStorage": torch.bool, "UntypedStorage": torch.uint8}


class _StorageHeaderUnpickler(pickle.Unpickler):
    """Reads the one record of a legacy `torch.save(storage)` stream: which storage type, how many
    elements. Resolves only storage type names and builds nothing."""

    def __init__(self, file):
        super().__init__(file)
        self.pid = None

    def find_class(self, module, name):
        if module == "torch" and name in _STORAGE_DTYPES:
            return name
        raise pickle.UnpicklingError(f"tensor storage names {module}.{name}, expected a torch storage type")

    def persistent_load(self, pid):
        self.pid = pid
        return None


def _plain_load(f):
    return _StorageHeaderUnpickler(f).load()


def _load_storage_from_bytes(data):
    """Replacement for torch.storage._load_from_bytes, which calls a trusting torch.load. The
    bytes are a legacy torch.save of one storage: magic number, protocol, system info, a record
    naming the storage type and element count, the storage keys, then the element count (int64)
    and the raw data. The claimed count must match the bytes really present."""
    if not isinstance(data, (bytes, bytearray)):
        raise pickle.UnpicklingError("tensor storage bytes expected")
    f = io.BytesIO(data)
    try:
        _plain_load(f), _plain_load(f)
        sys_info = _plain_load(f)
        header = _StorageHeaderUnpickler(f)
        header.load()
        _plain_load(f)
    except (EOFError, ValueError, TypeError) as e:
        raise pickle.UnpicklingError(f"tensor storage is not a torch storage record ({e})") from e
    pid = header.pid
    if not (isinstance(sys_info, dict) and sys_info.get("little_endian") is True):
        raise pickle.UnpicklingError("tensor storage is not little-endian")
    if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage" and isinstance(pid[4], int)):
        raise pickle.UnpicklingError("tensor storage record is malformed")
    dtype = _STORAGE_DTYPES[pid[1]]
    itemsize = torch.empty((), dtype=dtype).element_size()
    numel = int.from_bytes(f.read(8), "little", signed=True)
    remaining = len(data) - f.tell()
    if numel != pid[4] or numel < 0 or numel * itemsize != remaining:
        raise pickle.UnpicklingError(f"tensor storage claims {pid[4]} elements but holds {remaining} bytes")
    raw = bytearray(data[f.tell():])
    return torch.frombuffer(raw, dtype=dtype) if raw else torch.empty(0, dtype=dtype)


def _check_hooks(hooks) -> None:
    if hooks is not None and len(hooks) != 0:
        raise pickle.UnpicklingError("tensor carries backward hooks (code), which safe loading refuses")


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                       metadata=None):
    """A strided view of the storage (a flat tensor here), bounds-checked first."""
    _check_hooks(backward_hooks)
    if metadata:
        raise pickle.UnpicklingError("tensor carries extra metadata, which safe loading refuses")
    if not isinstance(storage, torch.Tensor) or storage.dim() != 1:
        raise pickle.UnpicklingError(f"tensor data is a {type(storage).__name__}, expected a torch storage")
    dims, steps, offset = [int(s) for s in size], [int(s) for s in stride], int(storage_offset)
    if len(dims) != len(steps) or any(d < 0 for d in dims) or any(s < 0 for s in steps) or offset < 0:
        raise pickle.UnpicklingError(f"tensor with size {dims} and stride {steps} is malformed")
    if all(d > 0 for d in dims) and offset + sum((d - 1) * s for d, s in zip(dims, steps)) >= storage.numel():
        raise pickle.UnpicklingError(f"tensor of size {dims} claims more data than its storage holds "
                                     f"({storage.numel()} elements)")
    numel = 1
    for d in dims:
        numel *= d
    if numel > storage.numel() + MAX_REPEAT:   # a stride-0 view: costs nothing here, gigabytes once copied
        raise pickle.UnpicklingError(f"tensor of size {dims} ({numel} elements) repeats a storage of "
                                     f"{storage.numel()} elements")
    tensor = storage.as_strided(dims, steps, offset)
    tensor.requires_grad = bool(requires_grad)
    return tensor


def _rebuild_parameter(data, requires_grad, backward_hooks):
    _check_hooks(backward_hooks)
    if not isinstance(data, torch.Tensor):
        raise pickle.UnpicklingError("parameter data is not a tensor")
    return torch.nn.Parameter(data, bool(requires_grad))


def _reconstruct_persistent_obj(meta):
    """A persistence record as data (the source is checked against `MAX_SOURCE_CHARS` here; the
    counts per file by the unpickler)."""
    if not isinstance(meta, dict):
        raise pickle.UnpicklingError("persistent record is not a dict")
    if meta.get("type") != "class":
        raise pickle.UnpicklingError(f"persistent record of unknown type {meta.get('type')!r}")
    version = meta.get("version")
    if not isinstance(version, int) or version > MAX_PERSISTENT_VERSION:
        raise pickle.UnpicklingError(f"persistent record version {version!r} is not supported")
    class_name, module_src, state = meta.get("class_name"), meta.get("module_src"), meta.get("state")
    if not isinstance(class_name, str) or not isinstance(module_src, str):
        raise pickle.UnpicklingError("persistent record without class name or module source")
    if len(module_src) > MAX_SOURCE_CHARS or len(class_name) > 200:
        raise pickle.UnpicklingError(f"persistent record {class_name[:60]!r} has a module source of "
                                     f"{len(module_src)} characters (at most {MAX_SOURCE_CHARS})")
    if state is None:
        state = {}
    if not isinstance(state, dict):
        raise pickle.UnpicklingError(f"persistent record {class_name!r} has a state of type {type(state).__name__}")
    return PersistentRecord(class_name, module_src, state)


def _codecs_encode(text, encoding="utf-8"):
    """Protocol-2 pickles spell bytes as _codecs.encode(str, 'latin1'); nothing else is allowed
    (other codecs can decompress, i.e. amplify, data)."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"_codecs.encode with encoding {encoding!r} is not allowed")
    return text.encode("latin1")


def _copyreg_reconstructor(cls, base, state):
    """Protocol 0/1 pickles rebuild objects of classes without their own reduce through
    `copyreg._reconstructor(cls, base, state)`: allowed only for the allow-listed dicts (a dict
    base) and for this unpickler's own placeholders (an `object` base), never for anything else."""
    if base is dict and isinstance(cls, type) and cls in (dict, dnnlib.EasyDict, collections.OrderedDict):
        return cls(state or {})
    if base is object and isinstance(cls, type) and issubclass(cls, (ModuleRecord, _Refused)) and state is None:
        return cls.__new__(cls)
    raise pickle.UnpicklingError(f"copyreg._reconstructor of {getattr(cls, '__name__', cls)!r} on "
                                 f"{getattr(base, '__name__', base)!r} is not allowed")


class _NdarrayName:
    """What `numpy.ndarray` resolves to: only `_reconstruct` may use it, never called directly
    (numpy.ndarray(shape) would allocate a size the file states)."""


_NDARRAY = _NdarrayName()


def _ndarray_reconstruct(subtype, shape, dtype):
    """numpy pickles build an empty array here and fill it with __setstate__, which checks the data
    against the shape; a non-empty shape here would allocate what the file claims."""
    if subtype is not _NDARRAY:
        raise pickle.UnpicklingError("numpy array subclass is not allowed")
    if not isinstance(shape, tuple) or len(shape) > 32 or not all(isinstance(d, int) and 0 <= d <= 1 for d in shape):
        raise pickle.UnpicklingError(f"numpy array reconstructed with shape {str(shape)[:60]}, expected an empty one")
    return np.ndarray.__new__(np.ndarray, shape, dtype)


def _bytearray(source=b"", encoding=None):
    """bytearray of data the file holds (protocols 0-4 spell it as bytes or latin-1 text), never of
    a size the file states: bytearray(2**31) is 2 GiB from a 43-byte file."""
    if isinstance(source, (bytes, bytearray)) and encoding is None:
        return bytearray(source)
    if isinstance(source, str) and encoding in ("latin1", "latin-1"):
        return bytearray(source, "latin1")
    raise pickle.UnpicklingError(f"bytearray({type(source).__name__}) is not allowed, only bytearrays of bytes the "
                                 f"file holds")


_np_scalar = np._core.multiarray.scalar if hasattr(np, "_core") else np.core.multiarray.scalar


def _numpy_scalar(dtype, obj=None):
    """A numpy scalar from its bytes; the bytes must be exactly one item of `dtype`."""
    if not isinstance(dtype, np.dtype):
        raise pickle.UnpicklingError("numpy scalar without a dtype")
    if dtype.hasobject:
        return _np_scalar(dtype, obj)
    if not isinstance(obj, bytes) or len(obj) != dtype.itemsize:
        raise pickle.UnpicklingError(f"numpy scalar of {dtype} holds {len(obj) if isinstance(obj, bytes) else '?'} "
                                     f"bytes, expected {dtype.itemsize}")
    return _np_scalar(dtype, obj)


_SAFE_GLOBALS: dict[str, Any] = {
    "collections.OrderedDict": collections.OrderedDict,
    "builtins.set": set,
    "builtins.frozenset": frozenset,
    "builtins.bytearray": _bytearray,
    "builtins.complex": complex,
    "builtins.slice": slice,
    "_codecs.encode": _codecs_encode,
    "copyreg._reconstructor": _copyreg_reconstructor,  # protocol 0/1 pickles
    "builtins.dict": dict,
    "builtins.object": object,
    "dnnlib.util.EasyDict": dnnlib.EasyDict,
    "dnnlib.EasyDict": dnnlib.EasyDict,
    PERSISTENCE_ENTRY: _reconstruct_persistent_obj,
    "torch._utils._rebuild_tensor_v2": _rebuild_tensor_v2,
    "torch._utils._rebuild_parameter": _rebuild_parameter,
    "torch.storage._load_from_bytes": _load_storage_from_bytes,
    "torch.device": torch.device,
    "torch.Size": torch.Size,
    "numpy.dtype": np.dtype,
    "numpy.ndarray": _NDARRAY,
    "numpy.core.multiarray._reconstruct": _ndarray_reconstruct,
    "numpy._core.multiarray._reconstruct": _ndarray_reconstruct,
    "numpy.core.multiarray.scalar": _numpy_scalar,
    "numpy._core.multiarray.scalar": _numpy_scalar,
}
for _dtype_name in ("float64", "float32", "float16", "bfloat16", "int64", "int32", "int16", "int8", "uint8", "bool"):
    _SAFE_GLOBALS[f"torch.{_dtype_name}"] = getattr(torch, _dtype_name)
for _fmt in ("contiguous_format", "channels_last", "preserve_format"):
    _SAFE_GLOBALS[f"torch.{_fmt}"] = getattr(torch, _fmt)

# torch.nn modules that StyleGAN-family networks nest inside their persistent classes.
TORCH_NN_CONTAINERS = ("torch.nn.modules.container.ModuleList", "torch.nn.modules.container.ModuleDict",
                       "torch.nn.modules.container.Sequential", "torch.nn.modules.linear.Identity",
                       "torch.nn.modules.module.Module")
FUNCTION_REFERENCES = frozenset(f"training.plucker.{name}" for name in (
    "get_rays", "plucker_embedding", "origin_dir_embedding", "two_plane_embedding"))
_PY2_MODULES = {"__builtin__": "builtins", "copy_reg": "copyreg"}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file):
        super().__init__(file)
        self.refused: dict[str, None] = {}      # names of refused globals (ordered, at most MAX_REFUSED)
        self.more_refused = 0                    # refused globals beyond those
        self._placeholders: dict[str, type] = {}
        self._records = 0
        self._sources: set[int] = set()

    def find_class(self, module, name):
        module = _PY2_MODULES.get(module, module)
        key = f"{module}.{name}"
        if key in _SAFE_GLOBALS:
            return self._reconstruct if key == PERSISTENCE_ENTRY else _SAFE_GLOBALS[key]
        if key in TORCH_NN_CONTAINERS:
            return self._placeholder(key, ModuleRecord)
        if key in FUNCTION_REFERENCES:
            return FunctionReference(key)
        if module.startswith("dnnlib.tflib") or module.startswith("tensorflow"):
            raise NetworkLoadError("TensorFlow-era StyleGAN pickles are not supported; convert them with "
                                   "NVIDIA's legacy.py first")
        key = key if len(key) <= 200 else key[:200] + "..."
        if f"global {key}" in self.refused or len(self.refused) < MAX_REFUSED:
            self.refused[f"global {key}"] = None
        else:
            self.more_refused += 1
        return self._placeholder(key, _Refused)

    def refusal(self, name: str) -> UntrustedPickleError:
        more = f"and {self.more_refused} further globals" if self.more_refused else ""
        return UntrustedPickleError(list(self.refused), name, more)

    def _placeholder(self, key, base):
        cls = self._placeholders.get(key)
        if cls is None:
            if len(self._placeholders) >= MAX_REFUSED:   # a class per name: 400k names took 4 GB
                key = "?"
                cls = self._placeholders.get((key, base))
                if cls is not None:
                    return cls
            cls = type(key.rsplit(".", 1)[-1], (base,), {"qualname": key})
            self._placeholders[key if key != "?" else (key, base)] = cls
        return cls

    def _reconstruct(self, meta):
        record = _reconstruct_persistent_obj(meta)
        self._records += 1
        self._sources.add(hash(record.module_src))
        if self._records > MAX_RECORDS or len(self._sources) > MAX_SOURCES:
            raise pickle.UnpicklingError(f"more than {MAX_RECORDS} persistent records or {MAX_SOURCES} module "
                                         f"sources (a network snapshot holds a few hundred and 3)")
        return record

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("the pickle refers to data outside itself (a persistent id); network "
                                     "pickles hold their tensors inline")


_MEMO_PUTS = ("PUT", "BINPUT", "LONG_BINPUT")


def check_length_fields(data: bytes) -> None:
    """Walk the opcodes once without building anything: every length field must fit in the file
    (a bytes/str opcode claiming terabytes is refused before any memory is reserved), and memo
    indexes must not run ahead of the opcodes (the unpickler sizes its memo by the largest index:
    LONG_BINPUT 2**27 in a 10-byte file is a 1 GiB table)."""
    count = 0
    try:
        for opcode, arg, pos in pickletools.genops(io.BytesIO(data)):
            count += 1
            if opcode.name in _MEMO_PUTS and isinstance(arg, int) and not 0 <= arg <= count:
                raise ValueError(f"memo index {arg} at byte {pos} runs ahead of the data")
            if opcode.name == "FRAME" and isinstance(arg, int) and arg > len(data) - pos:
                raise ValueError(f"frame of {arg} bytes at byte {pos} is longer than the file")
    except ValueError as e:
        raise pickle.UnpicklingError(f"malformed pickle data ({e})") from e


def _children(obj):
    if isinstance(obj, dict):
        return [v for kv in obj.items() for v in kv]
    if isinstance(obj, (list, tuple, set, frozenset)):
        return obj
    if isinstance(obj, (PersistentRecord, ModuleRecord)):
        return (obj.state,)
    return ()


def check_depth(obj, limit: int = MAX_DEPTH) -> None:
    """Refuse nesting deeper than `limit` (longest chain of containers, shared ones counted once),
    without recursion: every later step (rebuilding, copying, printing) may then recurse safely."""
    height: dict[int, int] = {}
    stack = [(obj, False)]
    on_path: set[int] = set()
    while stack:
        node, done = stack.pop()
        key = id(node)
        children = _children(node)
        if done:
            on_path.discard(key)
            height[key] = 1 + max((height.get(id(c), 0) for c in children), default=0)
            if height[key] > limit:
                raise pickle.UnpicklingError(f"data nested more than {limit} levels deep")
            continue
        if key in height or key in on_path or not children:
            continue
        on_path.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in children if id(c) not in height and id(c) not in on_path)
        if len(on_path) > limit:
            raise pickle.UnpicklingError(f"data nested more than {limit} levels deep")


def _load(unpickler: "_RestrictedUnpickler", name: str) -> Any:
    try:
        obj = unpickler.load()
    except (pickle.UnpicklingError, NetworkLoadError):
        if unpickler.refused:
            raise unpickler.refusal(name) from None
        raise
    except Exception as e:
        if unpickler.refused:
            raise unpickler.refusal(name) from None
        raise pickle.UnpicklingError(f"{type(e).__name__}: {e}") from e
    if unpickler.refused:
        raise unpickler.refusal(name)
    check_depth(obj)
    return obj


def restricted_loads(data: bytes, name: str = "the file") -> Any:
    """Unpickle `data` into plain data, `PersistentRecord`s and `ModuleRecord`s. Raises
    `UntrustedPickleError` naming every global outside the allow-list, `pickle.UnpicklingError`
    for malformed or oversized data."""
    check_length_fields(data)
    return _load(_RestrictedUnpickler(io.BytesIO(data)), name)


# ----------------------------------------------------------------------------- torch zip files

class _StorageType:
    """What a storage class name (torch.FloatStorage, ...) resolves to inside a zip file's
    persistent ids: its dtype, nothing callable."""

    def __init__(self, dtype):
        self.dtype = dtype


class _ZipUnpickler(_RestrictedUnpickler):
    """The restricted unpickler over a torch zip file's data.pkl: storages come from the zip's
    `data/<key>` entries, whose size must be the size the persistent id claims."""

    def __init__(self, file, zf: zipfile.ZipFile, prefix: str):
        super().__init__(file)
        self.zf, self.prefix = zf, prefix
        self.storages: dict[str, torch.Tensor] = {}

    def find_class(self, module, name):
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        if f"{module}.{name}" == "torch.storage.UntypedStorage":
            return _StorageType(torch.uint8)
        return super().find_class(module, name)

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage" and isinstance(pid[1], _StorageType)
                and isinstance(pid[2], str) and isinstance(pid[4], int) and pid[4] >= 0):
            raise pickle.UnpicklingError("tensor storage reference is malformed")
        key, dtype = pid[2], pid[1].dtype
        if key not in self.storages:
            try:
                info = self.zf.getinfo(f"{self.prefix}data/{key}")
            except KeyError:
                raise pickle.UnpicklingError(f"tensor storage {key[:40]!r} is missing from the zip file") from None
            itemsize = torch.empty((), dtype=dtype).element_size()
            nbytes = pid[4] * itemsize
            if info.file_size != nbytes:
                raise pickle.UnpicklingError(f"tensor storage {key[:40]!r} claims {nbytes} bytes but holds "
                                             f"{info.file_size}")
            raw = bytearray(self.zf.read(info))
            self.storages[key] = torch.frombuffer(raw, dtype=dtype) if raw else torch.empty(0, dtype=dtype)
        storage = self.storages[key]
        return storage if storage.dtype == dtype else storage.view(dtype)


def restricted_load_torch_zip(data: bytes, name: str = "the file") -> Any:
    """Read a file written by torch.save (zip format) with the restricted unpickler, never with
    torch.load. Every entry must be stored uncompressed, so no entry can inflate beyond the file."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        infos = zf.infolist()
    except (zipfile.BadZipFile, ValueError, EOFError) as e:
        raise pickle.UnpicklingError(f"damaged zip file ({e})") from e
    pkl = [i for i in infos if i.filename.endswith("/data.pkl") or i.filename == "data.pkl"]
    if len(pkl) != 1:
        raise pickle.UnpicklingError("zip file without exactly one data.pkl (not a torch file)")
    total = 0
    for info in infos:
        total += info.file_size
        if info.compress_type != zipfile.ZIP_STORED or info.file_size != info.compress_size or total > len(data):
            raise pickle.UnpicklingError(f"zip entry {info.filename[:60]!r} is compressed or larger than the file "
                                         f"({info.file_size} bytes); torch files store their entries as they are")
    byteorder = [i for i in infos if i.filename.endswith("/byteorder")]
    if byteorder and zf.read(byteorder[0]) != b"little":
        raise pickle.UnpicklingError("tensor data is not little-endian")
    prefix = pkl[0].filename[:-len("data.pkl")]
    try:
        raw = zf.read(pkl[0])
    except (zipfile.BadZipFile, ValueError, EOFError, OSError) as e:
        raise pickle.UnpicklingError(f"damaged zip file ({e})") from e
    check_length_fields(raw)
    return _load(_ZipUnpickler(io.BytesIO(raw), zf, prefix), name)

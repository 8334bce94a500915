"""A corpus of hostile network files, generated (never stored), and the figures it gives.

Every file is under 1 MB. Each payload, if it ran, would create the file MARKER beside the
corpus; the tests check it never appears. Each entry says what the loader must answer:

- 'code': UntrustedPickleError (loading it would run code from the file; only then does the
  visualizer ask for consent);
- 'data': NetworkLoadError that is not UntrustedPickleError (malformed, oversized or refused data);
- 'load': the file loads (its hostile part is data that the tools must refuse where they use it,
  e.g. a training_set_kwargs that names os.system).

    python tests/hostile_corpus.py            # generate into a temporary folder and print the figures
    python tests/hostile_corpus.py --out DIR  # keep the files in DIR
    python tests/hostile_corpus.py --measure DIR --json   # measure files already generated (tests)

Figures: files tried, payloads run (the marker), outcomes against expectations, and per file the
peak resident memory growth (Linux VmHWM, reset before each file through /proc/self/clear_refs)
and the CPU and wall time of the load, all in this one process after a warm-up load.
"""

from __future__ import annotations

import copyreg
import dataclasses
import functools
import io
import json
import operator
import os
import pickle
import struct
import sys
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

MARKER = "MARKER"
MAX_FILE_BYTES = 1 << 20
MANIFEST = "manifest.json"


@dataclasses.dataclass
class Entry:
    name: str          # file name in the corpus folder
    what: str          # the attack, in a few words
    expect: str        # 'code', 'data' or 'load'


class Reduce:
    """Pickles as a call `func(*args)`; callable itself so that calls can be chained."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args

    def __call__(self, *args):
        raise AssertionError("never called while writing the corpus")


def _tiny_generator(kind="raycond2"):
    import torch

    import dnnlib
    from raycond.families import FAMILIES
    kwargs = dict(z_dim=16, w_dim=16, img_resolution=16, img_channels=3, channel_base=256, channel_max=16,
                  mapping_kwargs=dict(num_layers=2), c_dim=25 if FAMILIES[kind].camera else 0)
    if FAMILIES[kind].backbone == "stylegan3":
        kwargs.update(channel_base=1024, channel_max=32, num_layers=4, num_critical=1, margin_size=2)
    torch.manual_seed(0)
    return dnnlib.util.construct_class_by_name(class_name=FAMILIES[kind].generator, **kwargs).eval()


def _record_meta(net) -> tuple:
    """(reconstruct function, meta dict) of a persistent network, to be altered."""
    fn, (meta,) = net.__reduce__()[:2]
    return fn, dict(meta, state=dict(meta["state"]))


def _persistent(meta: dict):
    from torch_utils import persistence
    return Reduce(persistence._reconstruct_persistent_obj, meta)


def storage_claiming(numel: int) -> bytes:
    """A legacy torch storage record that claims `numel` floats but holds four."""
    import torch
    f = io.BytesIO()
    for part in (0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001, "little_endian": True}):
        pickle.dump(part, f, protocol=2)

    class Header(pickle.Pickler):
        def persistent_id(self, obj):
            return ("storage", torch.FloatStorage, "0", "cpu", numel, None) if obj == "S" else None

    Header(f, protocol=2).dump("S")
    pickle.dump(["0"], f, protocol=2)
    f.write(struct.pack("<q", numel) + b"\0" * 16)
    return f.getvalue()


def _safetensors(networks, extra=None, tensors=None, meta_override=None, raw_header=None) -> bytes:
    """A safetensors file written by hand: a header (JSON) naming `networks`, then tensor bytes."""
    tensors = tensors if tensors is not None else {"G_ema/w": ("F32", [2], b"\0" * 8)}
    header, body = {}, b""
    for key, (dtype, shape, data) in tensors.items():
        header[key] = {"dtype": dtype, "shape": shape, "data_offsets": [len(body), len(body) + len(data)]}
        body += data
    meta = {"format": "raycond-safetensors-v1", "networks": json.dumps(networks), "extra": json.dumps(extra or {})}
    meta.update(meta_override or {})
    header["__metadata__"] = meta
    text = raw_header if raw_header is not None else json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + body


def _torch_zip(obj) -> bytes:
    import torch
    f = io.BytesIO()
    torch.save(obj, f)
    return f.getvalue()


def _zip_with(entries: dict, compress=zipfile.ZIP_STORED) -> bytes:
    f = io.BytesIO()
    with zipfile.ZipFile(f, "w", compression=compress) as z:
        for name, data in entries.items():
            z.writestr(name, data)
    return f.getvalue()


def _raw_zip(entries) -> bytes:
    """A zip archive from (name, method, compressed bytes, crc32, uncompressed size) entries, written
    field by field: the sizes it declares are whatever the caller says."""
    local, central = b"", b""
    for name, method, data, crc, size in entries:
        name = name.encode()
        fields = struct.pack("<HHHHHIIIHH", 20, 0, method, 0, 0x21, crc, len(data), size, len(name), 0)
        central += b"PK\x01\x02" + struct.pack("<H", 20) + fields + struct.pack("<HHHII", 0, 0, 0, 0, len(local)) + name
        local += b"PK\x03\x04" + fields + name + data
    end = struct.pack("<HHHHIIH", 0, 0, len(entries), len(entries), len(central), len(local), 0)
    return local + central + b"PK\x05\x06" + end


def _zip_bomb(size: int) -> bytes:
    """A torch-looking zip whose one storage entry inflates from about 1 MB to `size` bytes. Each
    16 MiB of zeros is deflated once and repeated (a full flush makes the pieces independent)."""
    import zlib
    chunk = bytes(1 << 24)
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    piece = deflate.compress(chunk) + deflate.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(size // len(chunk)):
        crc = zlib.crc32(chunk, crc)
    stream = piece * (size // len(chunk)) + zlib.compressobj(9, zlib.DEFLATED, -15).flush()
    pkl = pickle.dumps({"format": "raycond-weights-v1"}, protocol=2)
    return _raw_zip([("archive/data.pkl", 0, pkl, zlib.crc32(pkl), len(pkl)),
                     ("archive/data/0", 8, stream, crc, size)])


def _np_multiarray(np):
    return np._core.multiarray if hasattr(np, "_core") else np.core.multiarray


def _nested(opcode_open: bytes, opcode_close: bytes, depth: int) -> bytes:
    return b"\x80\x04" + opcode_open * depth + opcode_close * (depth - 1) + b"."


def generate(outdir: str) -> list[Entry]:
    """Write every hostile file into `outdir` (and a manifest); returns the entries."""
    import subprocess

    import numpy as np
    import torch

    import dnnlib
    os.makedirs(outdir, exist_ok=True)
    marker = os.path.join(outdir, MARKER)
    cmd = f"touch {marker}"
    entries: list[Entry] = []

    def put(name, data, what, expect):
        assert len(data) < MAX_FILE_BYTES, (name, len(data))
        with open(os.path.join(outdir, name), "wb") as f:
            f.write(data)
        entries.append(Entry(name, what, expect))

    def put_pickle(name, obj, what, expect, protocol=4):
        put(name, pickle.dumps(obj, protocol=protocol), what, expect)

    # Files a payload may need: a hub repository, a script, an inner pickle.
    with open(os.path.join(outdir, "hubconf.py"), "w") as f:
        f.write(f"open({marker!r}, 'w').write('hub')\ndef m(**kw):\n    return None\n")
    with open(os.path.join(outdir, "payload.py"), "w") as f:
        f.write(f"open({marker!r}, 'w').write('runpy')\n")
    inner = pickle.dumps(Reduce(os.system, cmd))
    G = _tiny_generator()
    fn, meta = _record_meta(G)

    # 1. Globals that run code, in every protocol and through every route.
    for protocol in range(6):
        put_pickle(f"os_system_p{protocol}.pkl", {"G_ema": Reduce(os.system, cmd)}, f"os.system, protocol {protocol}",
                   "code", protocol)
    code_calls = {
        "eval": Reduce(eval, f"open({marker!r}, 'w')"),
        "exec": Reduce(exec, f"open({marker!r}, 'w')"),
        "popen": Reduce(subprocess.Popen, ["touch", marker]),
        "check_call": Reduce(subprocess.check_call, ["touch", marker]),
        "builtins_open": Reduce(open, marker, "w"),
        "io_open": Reduce(io.open, marker, "w"),
        "os_popen": Reduce(os.popen, cmd),
        "runpy": Reduce(__import__("runpy").run_path, os.path.join(outdir, "payload.py")),
        "torch_hub_load": Reduce(torch.hub.load, outdir, "m", "local"),
        "logging_filehandler": Reduce(__import__("logging").FileHandler, marker, "w"),
        "timeit": Reduce(__import__("timeit").timeit, f"open({marker!r}, 'w')", "pass", None, 1),
        "pickle_loads": Reduce(pickle.loads, inner),
        "torch_load": Reduce(torch.load, io.BytesIO(inner)),
        "numpy_load": Reduce(np.load, marker, None, True),
        "import_module": Reduce(__import__("importlib").import_module, "antigravity"),
        "getattr_chain": Reduce(Reduce(getattr, Reduce(__import__("importlib").import_module, "os"), "system"), cmd),
        "functools_partial": Reduce(Reduce(functools.partial, os.system, cmd)),
        "attrgetter": Reduce(Reduce(Reduce(operator.attrgetter, "system"), Reduce(__import__, "os")), cmd),
        "methodcaller": Reduce(Reduce(operator.methodcaller, "system", cmd), Reduce(__import__, "os")),
        "copyreg_reconstructor": Reduce(copyreg._reconstructor, subprocess.Popen, subprocess.Popen,
                                        ["touch", marker]),
        "copyreg_newobj": Reduce(copyreg.__newobj__, subprocess.Popen, ["touch", marker]),
        "ctypes_cdll": Reduce(__import__("ctypes").CDLL, os.path.join(outdir, "payload.so")),
        "numpy_ctypeslib": Reduce(np.ctypeslib.as_array, Reduce(__import__("ctypes").c_void_p, 4096), (16,)),
        "numpy_frombuffer_pointer": Reduce(np.frombuffer, b"\0" * 8, np.uint8, 8, 1 << 40),
        "tensor_hooks_os_system": Reduce(torch._utils._rebuild_parameter, torch.zeros(1), False,
                                         {0: Reduce(os.system, cmd)}),
    }
    for name, obj in code_calls.items():
        protocol = 1 if name == "copyreg_newobj" else 4     # protocol 2+ writes __newobj__ as NEWOBJ
        put_pickle(f"{name}.pkl", {"G_ema": G, "x": obj}, f"{name} beside a real network", "code", protocol)
    put_pickle("evil_augment_pipe.pkl", {"G_ema": G, "augment_pipe": Reduce(os.system, cmd)},
               "os.system as the augment pipe", "code")
    put_pickle("posix_system_bare.pkl", Reduce(os.system, cmd), "a bare os.system call", "code")
    put("posix_system_text_p0.pkl", f"cposix\nsystem\n(V{cmd}\ntR.".encode(), "hand-written protocol 0 call", "code")
    put("builtin_py2.pkl", f"c__builtin__\neval\n(Vopen({marker!r},'w')\ntR.".encode(), "Python 2 module name",
        "code")

    # 2. Persistence records: sources that would run, sources we cannot match, malformed records.
    src_run = f"open({marker!r}, 'w').write('x')\nclass Painter:\n    pass\n"
    put_pickle("persist_unknown_source.pkl", {"G_ema": _persistent(dict(meta, module_src=src_run,
                                                                          class_name="Painter"))},
               "module source that writes a file, unknown class", "code")
    src_like = f"import os\nos.system({cmd!r})\n" + meta["module_src"]
    put_pickle("persist_payload_in_our_source.pkl", {"G_ema": _persistent(dict(meta, module_src=src_like,
                                                                                state={}))},
               "our source with a payload line prepended and no weights", "code")
    put_pickle("persist_plucker_import.pkl",
               {"G_ema": _persistent(dict(meta, module_src="from training.plucker import plucker_embedding\n"
                                          f"import os\nos.system({cmd!r})\nclass Generator:\n"
                                          "    def __init__(self, z_dim): pass\n"))},
               "official-release lookalike with a payload", "code")
    put_pickle("persist_deep_source.pkl",
               {"G_ema": _persistent(dict(meta, module_src="x = " + "(" * 50000 + ")" * 50000 + "\n"))},
               "source nested 50k parentheses", "code")
    put_pickle("persist_huge_source.pkl", {"G_ema": _persistent(dict(meta, module_src="#" * 300_000))},
               "300 KB module source", "data")
    put_pickle("persist_bad_version.pkl", {"G_ema": _persistent(dict(meta, version=99))}, "record version 99", "data")
    put_pickle("persist_bad_type.pkl", {"G_ema": _persistent(dict(meta, type="function"))}, "record of type function",
               "data")
    put_pickle("persist_meta_list.pkl", {"G_ema": _persistent([1, 2, 3])}, "record meta is a list", "data")
    put_pickle("persist_state_str.pkl", {"G_ema": _persistent(dict(meta, state="x"))}, "record state is a str", "data")
    put_pickle("persist_no_class_name.pkl", {"G_ema": _persistent({k: v for k, v in meta.items()
                                                                  if k != "class_name"})},
               "record without class_name", "data")
    put_pickle("persist_20001_records.pkl",
               {"G_ema": [_persistent({"type": "class", "version": 6, "module_src": "", "class_name": "A",
                                       "state": {}}) for _ in range(20001)]}, "20001 persistent records", "data")
    put_pickle("persist_40_sources.pkl",
               {"G_ema": [_persistent(dict(meta, module_src=f"# {i}\n", state={})) for i in range(40)]},
               "40 distinct module sources", "data")
    for label, kwargs in {
        "zdim_16384": dict(z_dim=16384, w_dim=16384),
        "zdim_8192": dict(z_dim=8192, w_dim=8192),          # within the limits: refused by the size estimate
        "channels_8192": dict(channel_base=1 << 21, channel_max=8192),
        "channel_max_2e30": dict(channel_max=1 << 30, channel_base=1 << 30),
        "resolution_2e20": dict(img_resolution=1 << 20),
        "num_layers_1e6": dict(mapping_kwargs=dict(num_layers=10 ** 6)),
        "zdim_string": dict(z_dim="16384"),
        "zdim_negative": dict(z_dim=-1),
        "zdim_nan": dict(z_dim=float("nan")),
        "unknown_kwarg": dict(evil="os.system"),
        "nested_kwargs": dict(mapping_kwargs=dict(mapping_kwargs=dict(mapping_kwargs={}))),
        "embedding_os_system": dict(embedding="os.system"),
        "kwargs_list": None,
    }.items():
        state = dict(meta["state"])
        state["_init_kwargs"] = [1, 2] if kwargs is None else dict(state["_init_kwargs"], **kwargs)
        put_pickle(f"kwargs_{label}.pkl", {"G_ema": _persistent(dict(meta, state=state))},
                   f"our generator with constructor arguments {label}", "data")
    state = dict(meta["state"], _init_args=list(range(1000)))
    put_pickle("kwargs_1000_positional.pkl", {"G_ema": _persistent(dict(meta, state=state))},
               "our generator with 1000 positional arguments", "data")
    fc = G.mapping.fc0
    fc_fn, fc_meta = _record_meta(fc)
    fc_state = dict(fc_meta["state"], _init_kwargs=dict(fc_meta["state"]["_init_kwargs"], in_features=1 << 20,
                                                        out_features=1 << 20))
    put_pickle("toplevel_layer_1e12.pkl", {"G_ema": _persistent(dict(fc_meta, state=fc_state))},
               "a layer of 2^40 weights at the top level", "data")
    shared = _persistent(meta)                  # one record, rebuilt once however often it is named
    put_pickle("same_network_500_keys.pkl", {f"G{i}": shared for i in range(500)}, "one network under 500 keys",
               "load")
    put_pickle("networks_500_records.pkl", {f"G{i}": _persistent(meta) for i in range(500)},
               "500 records sharing one state (500 real networks)", "data")
    put_pickle("bare_sequential.pkl", {"G_ema": torch.nn.Sequential(torch.nn.Identity())},
               "a bare torch.nn.Sequential", "data")
    put_pickle("weights_do_not_fit.pkl",
               {"G_ema": _persistent(dict(meta, state=dict(meta["state"], _buffers={"extra": torch.zeros(1)})))},
               "our generator with an extra buffer", "data")

    # 3. Dataset options and extras that name callables (the networks themselves are real).
    for label, kwargs in {
        "os_system": dict(class_name="os.system", command=cmd),
        "hub_load": dict(class_name="torch.hub.load", repo_or_dir=outdir, model="m", source="local", trust_repo=True),
        "logging": dict(class_name="logging.basicConfig", filename=marker, filemode="w"),
        "dataset_prefix": dict(class_name="training.dataset.os.system", command=cmd),
        "dataset_bad_arg": dict(class_name="training.dataset.ImageFolderDataset", path=outdir, hook="os.system"),
    }.items():
        put_pickle(f"tsk_{label}.pkl", {"G_ema": G, "training_set_kwargs": dnnlib.EasyDict(kwargs)},
                   f"training_set_kwargs {label}", "load")
    put_pickle("camera_stats_stride0.pkl",
               {"G_ema": G, "camera_stats": {"radius": torch.zeros(1).expand(1 << 31)}},
               "camera_stats as a stride-0 tensor of 2^31 elements", "data")
    put_pickle("camera_stats_tensor.pkl", {"G_ema": G, "camera_stats": {"radius": torch.zeros(3)}},
               "camera_stats holding a tensor", "data")
    put_pickle("progress_strings.pkl", {"G_ema": G, "kimg": "x" * 100}, "kimg as a string", "data")

    # 4. Numpy forgeries.
    put_pickle("numpy_reconstruct_huge.pkl",
               {"G_ema": Reduce(_np_multiarray(np)._reconstruct, np.ndarray, (1 << 40,), b"b")},
               "numpy _reconstruct with 2^40 elements", "data")
    put_pickle("numpy_ndarray_call.pkl", {"G_ema": Reduce(np.ndarray, (1 << 31,), np.dtype("u1"))},
               "numpy.ndarray(2^31) called directly", "data")
    arr = np.zeros(4, np.float32)
    fn_a, args_a, state_a = arr.__reduce__()
    forged = (state_a[0], (1 << 31,), state_a[2], state_a[3], state_a[4])

    class Forged:
        def __reduce__(self):
            return fn_a, args_a, forged
    put_pickle("numpy_setstate_shape.pkl", {"G_ema": Forged()}, "numpy setstate claiming 2^31 elements", "data")
    put_pickle("numpy_scalar_big_dtype.pkl",
               {"G_ema": Reduce(_np_multiarray(np).scalar, np.dtype(("V", 1 << 30)), b"\0")},
               "numpy scalar of a 1 GiB dtype", "data")

    # 5. Size bombs in the pickle stream.
    put("bytearray_2gib.pkl", pickle.dumps(Reduce(bytearray, 1 << 31), protocol=2), "bytearray(2 GiB), 43 bytes",
        "data")
    put("bytearray8_claim.pkl", b"\x80\x05\x96" + struct.pack("<Q", 1 << 31) + b"ab.", "BYTEARRAY8 claiming 2 GiB",
        "data")
    put("binunicode8_claim.pkl", b"\x80\x04\x8d" + struct.pack("<Q", 1 << 42) + b"abc.", "BINUNICODE8 claiming 4 TiB",
        "data")
    put("binbytes8_claim.pkl", b"\x80\x04\x8e" + struct.pack("<Q", 1 << 42) + b"abc.", "BINBYTES8 claiming 4 TiB",
        "data")
    put("long4_claim.pkl", b"\x80\x02\x8b" + struct.pack("<i", 1 << 30) + b"\x01.", "LONG4 claiming 1 GiB", "data")
    put("memo_index_bomb.pkl", b"\x80\x04N\x94r" + struct.pack("<I", 1 << 27) + b".", "LONG_BINPUT 2^27", "data")
    put("frame_claim.pkl", b"\x80\x04\x95" + struct.pack("<Q", 1 << 40) + b"N.", "FRAME claiming 1 TiB", "data")
    put("storage_claim_huge.pkl",
        pickle.dumps({"G_ema": Reduce(torch.storage._load_from_bytes, storage_claiming(1 << 40))}),
        "legacy storage claiming 2^40 floats", "data")
    put("storage_inner_payload.pkl", pickle.dumps({"G_ema": Reduce(torch.storage._load_from_bytes, inner)}),
        "storage bytes that are an os.system pickle", "data")
    put("persistent_id_missing.pkl", b"\x80\x02X\x01\x00\x00\x000Q.", "persistent id to a missing storage", "data")
    put("nested_list_300k.pkl", _nested(b"]", b"a", 300_000), "lists nested 300k deep", "data")
    put("nested_tuple_1m.pkl", b"\x80\x04N" + b"\x85" * 900_000 + b".", "tuples nested 900k deep", "data")
    put("nested_dict_100k.pkl", b"\x80\x04" + b"}K\x00" * 100_000 + b"N" + b"s" * 100_000 + b".",
        "dicts nested 100k deep", "data")
    level = b"ccopy_reg\n_reconstructor\n(cdnnlib.util\nEasyDict\nc__builtin__\ndict\n(dtRVk\n"
    put("nested_easydict_p0.pkl", level * 10_000 + b"N" + b"s" * 10_000 + b".",
        "EasyDicts nested 10k deep, protocol 0", "data")
    dag = b"\x80\x04}\x8c\x01x]\x94"          # {'x': ...}; memo 0: the innermost list
    for i in range(1, 80):                     # memo i: a list holding list i-1 twice (the previous one popped)
        dag += b"0]\x94(h" + bytes([i - 1]) + b"h" + bytes([i - 1]) + b"e"
    put("dag_2_to_80.pkl", dag + b"s.", "80 levels of lists holding the previous one twice (2^80 paths)", "load")
    names = b"".join(b"\x8c\x01m\x8c\x06k%05d\x93" % i for i in range(80000))
    put("globals_80k.pkl", b"\x80\x04(" + names + b"l.", "80k distinct globals in one list", "code")
    put("pid_chain.pkl", b"\x80\x02" + b"X\x01\x00\x00\x000Q" * 10 + b".", "persistent ids", "data")

    # 6. Torch zip (.pt) files.
    put("pt_names_os_system.pt", _torch_zip({"format": "raycond-weights-v1", "networks": {"G_ema": {
        "class_name": "os.system", "init_args": [cmd], "init_kwargs": {}, "state_dict": {}}}}),
        ".pt naming os.system as the class", "data")
    put("pt_reduce_os_system.pt", _torch_zip({"x": Reduce(os.system, cmd)}), ".pt holding an os.system call",
        "data")
    put("pt_prefix_class.pt", _torch_zip({"format": "raycond-weights-v1", "networks": {"G_ema": {
        "class_name": "training.networks_stylegan2.torch.nn.Linear", "init_args": [32768, 32768], "init_kwargs": {},
        "state_dict": {}}}}), ".pt naming torch.nn.Linear through a family module", "data")
    put("pt_networks_list.pt", _torch_zip({"format": "raycond-weights-v1", "networks": [1, 2]}),
        ".pt with a list for networks", "data")
    good_pt = _torch_zip({"format": "raycond-weights-v1", "networks": {}, "t": torch.zeros(4)})
    with zipfile.ZipFile(io.BytesIO(good_pt)) as z:
        parts = {i.filename: z.read(i) for i in z.infolist()}
    put("pt_deflated.pt", _zip_with(parts, zipfile.ZIP_DEFLATED), ".pt with compressed entries", "data")
    data_key = next(k for k in parts if "/data/" in k)
    put("pt_storage_short.pt", _zip_with({**parts, data_key: b"\0" * 4}), ".pt storage shorter than claimed", "data")
    put("pt_storage_missing.pt", _zip_with({k: v for k, v in parts.items() if k != data_key}),
        ".pt without its storage", "data")
    put("pt_zip_bomb.pt", _zip_bomb(1 << 30), "1 MB zip inflating to 1 GiB", "data")

    # 7. safetensors headers.
    ok_kwargs = dict(G.init_kwargs)
    for label, networks, expect in [
        ("class_os_system", {"G_ema": {"class_name": "os.system", "init_args": [cmd], "init_kwargs": {}}}, "data"),
        ("class_prefix_linear", {"G_ema": {"class_name": "training.networks_stylegan2.torch.nn.Linear",
                                           "init_args": [16384, 16384], "init_kwargs": {}}}, "data"),
        ("class_prefix_os", {"G_ema": {"class_name": "training.networks_stylegan2.os.system",
                                       "init_args": [cmd], "init_kwargs": {}}}, "data"),
        ("class_dataset", {"G_ema": {"class_name": "training.dataset.ImageFolderDataset", "init_args": [outdir],
                                     "init_kwargs": {}}}, "data"),
        ("class_layer", {"G_ema": {"class_name": "training.networks_stylegan2.FullyConnectedLayer",
                                   "init_args": [1 << 20, 1 << 20], "init_kwargs": {}}}, "data"),
        ("no_class_name", {"G_ema": {"init_args": [], "init_kwargs": ok_kwargs}}, "data"),
        ("networks_list", [1, 2, 3], "data"),
        ("networks_string", "G_ema", "data"),
        ("entry_list", {"G_ema": [1]}, "data"),
        ("unknown_kwarg", {"G_ema": {"class_name": "training.networks_raycond2.Generator", "init_args": [],
                                     "init_kwargs": dict(ok_kwargs, evil=1)}}, "data"),
        ("zdim_16384", {"G_ema": {"class_name": "training.networks_raycond2.Generator", "init_args": [],
                                  "init_kwargs": dict(ok_kwargs, z_dim=16384, w_dim=16384)}}, "data"),
        ("kwargs_string", {"G_ema": {"class_name": "training.networks_raycond2.Generator", "init_args": [],
                                     "init_kwargs": "z_dim=512"}}, "data"),
        ("unknown_field", {"G_ema": {"class_name": "training.networks_raycond2.Generator", "init_args": [],
                                     "init_kwargs": ok_kwargs, "module_src": "import os"}}, "data"),
        ("positional_flood", {"G_ema": {"class_name": "training.networks_raycond2.Generator",
                                        "init_args": list(range(10000)), "init_kwargs": {}}}, "data"),
    ]:
        put(f"st_{label}.safetensors", _safetensors(networks), f"safetensors {label}", expect)
    good = {"G_ema": {"class_name": "training.networks_raycond2.Generator", "init_args": [], "init_kwargs": ok_kwargs}}
    put("st_tsk_os_system.safetensors",
        _safetensors(good, extra={"training_set_kwargs": {"class_name": "os.system", "command": cmd}}),
        "safetensors with training_set_kwargs os.system (weights missing)", "data")
    put("st_camera_stats_huge.safetensors", _safetensors(good, extra={"camera_stats": {"radius": [0.0] * 100000}}),
        "safetensors camera_stats of 100k numbers", "data")
    put("st_header_claim.safetensors", struct.pack("<Q", 1 << 40) + b"{}", "header length 1 TiB", "data")
    put("st_header_deep.safetensors", _safetensors(good, raw_header=b'{"a":' + b"[" * 200_000 + b"]" * 200_000 + b"}"),
        "header JSON nested 200k deep", "data")
    put("st_networks_deep.safetensors",
        _safetensors(good, meta_override={"networks": "[" * 100_000 + "]" * 100_000}),
        "networks JSON nested 100k deep", "data")
    put("st_tensor_claim.safetensors",
        _safetensors(good, tensors={"G_ema/w": ("F32", [1 << 31], b"\0" * 8)}), "tensor shape 2^31 over 8 bytes",
        "data")
    put("st_no_format.safetensors", _safetensors(good, meta_override={"format": "x"}), "another format", "data")

    with open(os.path.join(outdir, MANIFEST), "w") as f:
        json.dump([dataclasses.asdict(e) for e in entries], f, indent=0)
    return entries


def read_manifest(outdir: str) -> list[Entry]:
    with open(os.path.join(outdir, MANIFEST)) as f:
        return [Entry(**e) for e in json.load(f)]


# ----------------------------------------------------------------------------- measuring

def _vm_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def outcome_of(path: str) -> tuple[str, str]:
    """('code' | 'data' | 'load' | 'crash', message) of raycond.loading.load_snapshot on `path`."""
    from raycond import loading
    try:
        loading.load_snapshot(path)
    except loading.UntrustedPickleError as e:
        return "code", str(e)
    except loading.NetworkLoadError as e:
        return "data", str(e)
    except Exception as e:  # noqa: BLE001 - anything else is a failure the tests report
        return "crash", f"{type(e).__name__}: {e}"
    return "load", ""


def measure(outdir: str) -> dict:
    """Load every file of the corpus in this process; per file the outcome, peak memory growth
    (KiB above the resident size before it) and CPU/wall seconds."""
    import time

    import torch
    torch.set_num_threads(1)
    from raycond import loading
    warm = os.path.join(outdir, "_warm.pkl")
    with open(warm, "wb") as f:                  # imports and first-use caches are not the file's cost
        pickle.dump({"G_ema": _tiny_generator("raycond2"), "D": None}, f)
    loading.load_snapshot(warm)
    for kind in ("stylegan3",):
        with open(warm, "wb") as f:
            pickle.dump({"G_ema": _tiny_generator(kind)}, f)
        loading.load_snapshot(warm)
    os.remove(warm)
    rows = []
    for entry in read_manifest(outdir):
        path = os.path.join(outdir, entry.name)
        can_reset = _reset_peak()
        before = _vm_kib("VmRSS")
        c0, t0 = time.process_time(), time.perf_counter()
        outcome, message = outcome_of(path)
        cpu, wall = time.process_time() - c0, time.perf_counter() - t0
        growth = max(_vm_kib("VmHWM") - before, 0) if can_reset else None
        rows.append(dict(name=entry.name, what=entry.what, expect=entry.expect, outcome=outcome, message=message,
                         bytes=os.path.getsize(path), rss_growth_kib=growth, cpu_s=cpu, wall_s=wall))
    return dict(files=len(rows), payloads_run=int(os.path.exists(os.path.join(outdir, MARKER))), rows=rows)


def report(result: dict) -> str:
    rows = result["rows"]
    growth = [r["rss_growth_kib"] for r in rows if r["rss_growth_kib"] is not None]
    worst_mem = max(rows, key=lambda r: r["rss_growth_kib"] or 0)
    worst_time = max(rows, key=lambda r: r["wall_s"])
    wrong = [r for r in rows if r["outcome"] != r["expect"]]
    lines = [f"{'file':<36} {'bytes':>8} {'expect':>6} {'got':>6} {'peak MB':>8} {'cpu s':>6} {'wall s':>6}"]
    for r in rows:
        mb = f"{r['rss_growth_kib'] / 1024:.1f}" if r["rss_growth_kib"] is not None else "?"
        lines.append(f"{r['name']:<36} {r['bytes']:>8} {r['expect']:>6} {r['outcome']:>6} {mb:>8} "
                     f"{r['cpu_s']:>6.2f} {r['wall_s']:>6.2f}")
    lines += [
        f"files tried: {result['files']} (largest {max(r['bytes'] for r in rows) / 2**20:.2f} MB)",
        f"payloads run: {result['payloads_run']}",
        f"outcomes as expected: {len(rows) - len(wrong)}/{len(rows)}"
        + ("".join(f"\n  {r['name']}: expected {r['expect']}, got {r['outcome']}: {r['message'][:160]}"
                   for r in wrong)),
        f"max peak RSS growth: {max(growth) / 1024:.1f} MB ({worst_mem['name']})" if growth else
        "max peak RSS growth: not measurable here (/proc/self/clear_refs unavailable)",
        f"max time per file: {worst_time['wall_s']:.2f} s wall, "
        f"{max(r['cpu_s'] for r in rows):.2f} s CPU ({worst_time['name']})",
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    import argparse
    import tempfile
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", help="write the corpus here (default: a temporary folder)")
    parser.add_argument("--measure", metavar="DIR", help="only measure a corpus already generated in DIR")
    parser.add_argument("--json", action="store_true", help="print the measurements as JSON")
    opts = parser.parse_args(argv)
    if opts.measure:
        result = measure(opts.measure)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            outdir = opts.out or tmp
            generate(outdir)
            result = measure(outdir)
    print(json.dumps(result) if opts.json else report(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Turn the persistent records of a safely unpickled network file into this project's networks.

A StyleGAN-family pickle describes each network as (module source, class name, state). Instead
of executing that source, the record is matched against the network families this project
implements, the matching class is constructed with the stored constructor arguments, and every
parameter and buffer is copied in by name. A record matches a family when its module source is
exactly ours, or when the source (parsed, never run) defines the class with required constructor
arguments that our class takes too, as NVIDIA's StyleGAN2-ADA/StyleGAN3 modules and our older
snapshots do. The copy is strict: a missing, unexpected, reshaped or retyped tensor, or a nested
module of another class, refuses the file, because a partial load would render something else.

Sources that import `training.plucker` are the official Ray Conditioning release's; they have
their own numerics (ray embedding quirks, other concatenation points), so they are matched only
against the modules that reproduce that release (`OFFICIAL_FAMILIES`), and only when they define
every class such a module defines.

Families are named, not imported: `raycond` builds them through `dnnlib.util`, like every other
network, and never imports `training` directly.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import functools
import importlib
import inspect

import numpy as np
import torch

import dnnlib
from raycond.safe_pickle import FunctionReference, ModuleRecord, PersistentRecord, UntrustedPickleError

# Most specific first: when several fit a foreign source equally well, the first one wins.
FAMILY_MODULES = ("training.networks_raycond2", "training.networks_raycond3", "training.networks_stylegan2",
                  "training.networks_stylegan3", "training.augment")
# Official Ray Conditioning modules -> the modules whose classes they nest (mapping and affine
# layers come from our StyleGAN modules, which compute what the release's copies compute).
OFFICIAL_FAMILIES = {
    "training.networks_official_raycond2": ("training.networks_stylegan2",),
    "training.networks_official_raycond3": ("training.networks_stylegan3", "training.networks_stylegan2"),
}
# Keys of a snapshot that hold no learned weights; an augment pipe we cannot rebuild is dropped.
OPTIONAL_KEYS = ("augment_pipe",)


class _Mismatch(Exception):
    """The record does not fit one candidate class (the next candidate may fit)."""


@dataclasses.dataclass(frozen=True)
class _Signature:
    params: frozenset       # every named constructor argument
    required: frozenset     # those without a default
    varkw: bool


def _parse_interface(src: str) -> dict[str, _Signature] | None:
    """Class name -> constructor signature of every class in `src`, by parsing (never running)."""
    try:
        tree = ast.parse(src)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    classes = {}
    for node in tree.body:
        if not isinstance(node, ast.ClassDef):
            continue
        params, required, varkw = frozenset(), frozenset(), False
        for item in node.body:
            if isinstance(item, ast.FunctionDef) and item.name == "__init__":
                a = item.args
                positional = a.posonlyargs + a.args[1:]
                params = frozenset(x.arg for x in positional + a.kwonlyargs)
                required = frozenset([x.arg for x in positional[:len(positional) - len(a.defaults)]] +
                                     [x.arg for x, d in zip(a.kwonlyargs, a.kw_defaults) if d is None])
                varkw = a.kwarg is not None
        classes[node.name] = _Signature(params, required, varkw)
    return classes


@functools.lru_cache(maxsize=None)
def _family_source(module_name: str) -> str:
    """The source text of one of our network modules, as persistent pickles embed it."""
    return inspect.getsource(importlib.import_module(module_name))


def _live_signature(cls: type) -> _Signature:
    """Constructor signature of one of our classes as Python sees it (inherited ones included;
    persistence-decorated constructors point at the real one through __wrapped__)."""
    named = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD,
             inspect.Parameter.KEYWORD_ONLY)
    params = [p for p in list(inspect.signature(cls.__init__).parameters.values())[1:]]
    return _Signature(frozenset(p.name for p in params if p.kind in named),
                      frozenset(p.name for p in params if p.kind in named and p.default is p.empty),
                      any(p.kind == inspect.Parameter.VAR_KEYWORD for p in params))


@functools.lru_cache(maxsize=None)
def _family_interface(module_name: str) -> dict[str, _Signature]:
    """Class interfaces of one of our modules (parsed only when a foreign source needs them). A
    class that inherits its constructor gets the inherited signature."""
    classes = _parse_interface(_family_source(module_name)) or {}
    module = importlib.import_module(module_name)
    for name, sig in classes.items():
        cls = getattr(module, name, None)
        if not isinstance(cls, type) or sig.params or sig.varkw:
            continue
        defined = cls.__mro__[1] if "_orig_module_src" in cls.__dict__ else cls   # under the persistence decorator
        if "__init__" not in defined.__dict__:
            classes[name] = _live_signature(cls)
    return classes


_interface_cache: dict[str, dict | None] = {}


def _foreign_interface(src: str) -> dict[str, _Signature] | None:
    if src not in _interface_cache:
        _interface_cache[src] = _parse_interface(src)
    return _interface_cache[src]


_plucker_import_cache: dict[str, bool] = {}


def _is_official_raycond(src: str) -> bool:
    """The official Ray Conditioning modules import their ray embedding from training.plucker
    (an import statement found by parsing; a mention in a comment does not count)."""
    if src not in _plucker_import_cache:
        found = False
        if "training.plucker" in src:
            try:
                tree = ast.parse(src)
            except (SyntaxError, ValueError, RecursionError, MemoryError):
                tree = None
            for node in ast.walk(tree) if tree is not None else ():
                if isinstance(node, ast.ImportFrom) and node.module == "training.plucker":
                    found = True
                elif isinstance(node, ast.Import) and any(a.name == "training.plucker" for a in node.names):
                    found = True
        _plucker_import_cache[src] = found
    return _plucker_import_cache[src]


def _official_modules(theirs: dict[str, _Signature]) -> tuple[str, ...]:
    """Our counterpart of the official-release module `theirs` (the first whose classes `theirs`
    all define), followed by the modules it takes its dense layers from; () if none fits."""
    for module_name, bases in OFFICIAL_FAMILIES.items():
        if set(_family_interface(module_name)) <= set(theirs):
            return (module_name,) + bases
    return ()


def candidate_modules(record: PersistentRecord) -> list[str]:
    """Our modules that may rebuild `record`, best first; empty if its source is not recognised."""
    exact = [m for m in FAMILY_MODULES + tuple(OFFICIAL_FAMILIES) if _family_source(m) == record.module_src]
    if exact:
        return [m for m in exact if isinstance(getattr(importlib.import_module(m), record.class_name, None), type)]
    theirs = _foreign_interface(record.module_src)
    if not theirs or record.class_name not in theirs:
        return []
    modules = FAMILY_MODULES
    if _is_official_raycond(record.module_src):
        # Their numerics differ from our ray-conditioned networks: a class the release module
        # defines is rebuilt only from our official counterpart; the others (dense layers) from
        # the StyleGAN modules that counterpart builds them from.
        modules = _official_modules(theirs)
        if modules and record.class_name in _family_interface(modules[0]):
            modules = modules[:1]
        else:
            modules = modules[1:]
    sig = theirs[record.class_name]
    scored = []
    for rank, m in enumerate(modules):
        classes = _family_interface(m)
        ours = classes.get(record.class_name)
        if ours is None or not sig.required <= ours.params or (sig.varkw and not ours.varkw):
            continue
        shared = len(set(theirs) & set(classes)) / len(set(theirs) | set(classes))
        scored.append((-shared, rank, m))
    return [m for _, _, m in sorted(scored)]


def describe(record) -> str:
    """How a record is named in errors and in the visualizer's question."""
    if isinstance(record, ModuleRecord):
        return f"class {record.qualname}"
    return f"persistent class {record.class_name}"


def _refusal_detail(record: PersistentRecord) -> str:
    if _is_official_raycond(record.module_src):
        return ("it imports training.plucker like the official Ray Conditioning release, but does not define "
                "the classes of that release's raycond2 or raycond3 networks")
    return "its embedded module source does not match a network family this project implements"


# ----------------------------------------------------------------------------- matching state

_PLAIN_TYPES = (str, int, float, bool, type(None), np.generic)


def _check_plain(value, where: str) -> None:
    if isinstance(value, _PLAIN_TYPES):
        return
    if isinstance(value, (list, tuple)):
        for v in value:
            _check_plain(v, where)
        return
    if isinstance(value, dict):
        for k, v in value.items():
            _check_plain(k, where)
            _check_plain(v, where)
        return
    raise _Mismatch(f"{where} holds a {type(value).__name__}, expected plain values")


def _tensors(state: dict, key: str, where: str) -> dict:
    entries = state.get(key) or {}
    if not isinstance(entries, dict):
        raise _Mismatch(f"{where}: {key} is not a dict")
    for name, t in entries.items():
        if t is not None and not isinstance(t, torch.Tensor):
            raise _Mismatch(f"{where}{name} is a {type(t).__name__}, expected a tensor")
    return {k: v for k, v in entries.items() if v is not None}


def _match(record, module: torch.nn.Module, where: str, pairs: list) -> None:
    """Pair every stored tensor with ours, recursively; raise _Mismatch on any difference."""
    label = where.rstrip(".") or "the network"
    if isinstance(record, PersistentRecord):
        if type(module).__name__ != record.class_name:
            raise _Mismatch(f"{label} is a {record.class_name} in the file, a {type(module).__name__} here")
        if type(module).__module__ not in candidate_modules(record):
            raise _Mismatch(f"{label} ({record.class_name}) comes from an unrecognised module source")
    elif isinstance(record, ModuleRecord):
        ours = f"{type(module).__module__}.{type(module).__qualname__}"
        if ours != record.qualname:
            raise _Mismatch(f"{label} is a {record.qualname} in the file, a {ours} here")
    else:
        raise _Mismatch(f"{label} is a {type(record).__name__} in the file, a {type(module).__name__} here")
    state = record.state
    for attr, expected in getattr(type(module), "record_attributes", {}).items():
        found = _attribute_value(state.get(attr))
        if found != expected:
            raise _Mismatch(f"{label}: its {attr} is {found!r} in the file, this project rebuilds only {expected!r}")
    for key, ours in (("_parameters", module._parameters), ("_buffers", module._buffers)):
        theirs = _tensors(state, key, where)
        ours = {k: v for k, v in ours.items() if v is not None}
        if set(theirs) != set(ours):
            missing, extra = sorted(set(ours) - set(theirs)), sorted(set(theirs) - set(ours))
            raise _Mismatch(f"{label}: tensors missing {missing[:3]}, unexpected {extra[:3]}")
        for name, t in theirs.items():
            if t.shape != ours[name].shape or t.dtype != ours[name].dtype:
                raise _Mismatch(f"{where}{name} is {t.dtype} {list(t.shape)} in the file, "
                                f"{ours[name].dtype} {list(ours[name].shape)} here")
            pairs.append((ours[name], t))
    theirs_mods = state.get("_modules") or {}
    if not isinstance(theirs_mods, dict):
        raise _Mismatch(f"{label}: _modules is not a dict")
    theirs_mods = {k: v for k, v in theirs_mods.items() if v is not None}
    ours_mods = {k: v for k, v in module._modules.items() if v is not None}
    if set(theirs_mods) != set(ours_mods):
        raise _Mismatch(f"{label}: submodules differ (file: {sorted(theirs_mods)[:4]}, here: {sorted(ours_mods)[:4]})")
    for name, sub in theirs_mods.items():
        _match(sub, ours_mods[name], f"{where}{name}.", pairs)
    if isinstance(state.get("training"), bool):
        module.training = state["training"]


def _attribute_value(value):
    """A state attribute as compared with a class's `record_attributes`: functions (references
    kept by the safe unpickler, or live ones from a trusted load) by their qualified name."""
    if isinstance(value, FunctionReference):
        return value.qualname
    if callable(value) and hasattr(value, "__module__") and hasattr(value, "__qualname__"):
        return f"{value.__module__}.{value.__qualname__}"
    return value


@contextlib.contextmanager
def _preserved_rng():
    """Constructing a network draws random initial weights; loading must not move the caller's
    random streams (a trusting load does not)."""
    np_state = np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        yield
    np.random.set_state(np_state)


def _build(module_name: str, record: PersistentRecord) -> torch.nn.Module:
    args = record.state.get("_init_args", ())
    kwargs = record.state.get("_init_kwargs", {})
    if not isinstance(args, (list, tuple)) or not isinstance(kwargs, dict):
        raise _Mismatch("constructor arguments are malformed")
    _check_plain(list(args), "constructor arguments")
    _check_plain(dict(kwargs), "constructor arguments")
    try:
        with _preserved_rng():
            net = dnnlib.util.construct_class_by_name(*args, class_name=f"{module_name}.{record.class_name}",
                                                      **dict(kwargs))
    except Exception as e:  # our constructor rejecting their arguments: this candidate does not fit
        raise _Mismatch(f"{module_name}.{record.class_name} does not accept the stored arguments "
                        f"({type(e).__name__}: {e})") from None
    pairs: list = []
    _match(record, net, "", pairs)
    with torch.no_grad():
        for ours, theirs in pairs:
            ours.copy_(theirs)
            if isinstance(ours, torch.nn.Parameter):
                ours.requires_grad_(theirs.requires_grad)
    return net


def rebuild_record(record, name: str = "the file") -> torch.nn.Module:
    """Build our network for one top-level record, or raise UntrustedPickleError saying why not."""
    if not isinstance(record, PersistentRecord):
        raise UntrustedPickleError([describe(record)], name, "a bare torch module, not a network of a known family")
    candidates = candidate_modules(record)
    if not candidates:
        raise UntrustedPickleError([describe(record)], name, _refusal_detail(record))
    problems = []
    for module_name in candidates:
        try:
            return _build(module_name, record)
        except _Mismatch as e:
            problems.append(str(e))
    raise UntrustedPickleError([describe(record)], name,
                               f"its stored weights do not fit this project's {record.class_name}: {problems[0]}")


def rebuild_tree(obj, name: str = "the file"):
    """Replace every record in a safely unpickled snapshot (dicts, lists, tuples) by our network.
    Refusals are collected over the whole file so that one error names every class."""
    done: dict[int, object] = {}
    refused: list[str] = []
    details: list[str] = []

    def visit(value, key=None):
        if isinstance(value, (PersistentRecord, ModuleRecord)):
            if id(value) not in done:
                try:
                    done[id(value)] = rebuild_record(value, name)
                except UntrustedPickleError as e:
                    if key in OPTIONAL_KEYS and isinstance(value, PersistentRecord) and candidate_modules(value):
                        done[id(value)] = None
                    else:
                        refused.extend(e.names)
                        details.append(e.detail)
                        done[id(value)] = None
            return done[id(value)]
        if isinstance(value, dict):
            for k in list(value):
                value[k] = visit(value[k], k)
            return value
        if isinstance(value, list):
            value[:] = [visit(v) for v in value]
            return value
        if isinstance(value, tuple):
            return tuple(visit(v) for v in value)
        return value

    result = visit(obj)
    if refused:
        raise UntrustedPickleError(refused, name, details[0])
    return result

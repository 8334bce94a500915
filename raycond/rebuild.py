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

Families are named, not imported: the classes a file may name are those of `raycond.families`
(matched exactly), and `raycond` never imports `training` directly. Before a class is constructed,
its stored arguments are checked against the families' limits, and the network is first built
on fake tensors (no memory) to count the bytes of its parameters and buffers: a file cannot make
this process allocate much more than the file itself holds (`Budget`).
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import functools
import importlib
import inspect
import itertools

import numpy as np
import torch

from raycond import families
from raycond.safe_pickle import (FunctionReference, ModuleRecord, NetworkLoadError, PersistentRecord,
                                 UntrustedPickleError)

# Official Ray Conditioning modules -> the modules whose classes they nest (mapping and affine
# layers come from our StyleGAN modules, which compute what the release's copies compute).
OFFICIAL_FAMILIES = {
    "training.networks_official_raycond2": ("training.networks_stylegan2",),
    "training.networks_official_raycond3": ("training.networks_stylegan3", "training.networks_stylegan2"),
}


def family_modules() -> tuple[str, ...]:
    """The modules a foreign source is matched against, in the families table's order (most specific
    first: when several fit a foreign source equally well, the first one wins). Read from the table
    at each load, so that a family added to it (docs/extending.md) loads too."""
    return tuple(m for m in families.network_modules() if m not in OFFICIAL_FAMILIES)


# Bytes a file may make this process allocate for networks: twice its size (float16 weight files
# are widened to float32) plus this much for buffers that files need not hold.
BUDGET_SLACK = 16 << 20
# Networks one file may make this process construct (a snapshot holds G, D, G_ema, augment_pipe):
# each construction takes time, and records sharing one state would all pass the byte budget.
MAX_NETWORKS = 16
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


@functools.lru_cache(maxsize=64)
def _foreign_interface(src: str) -> dict[str, _Signature] | None:
    return _parse_interface(src)


@functools.lru_cache(maxsize=64)
def _is_official_raycond(src: str) -> bool:
    """The official Ray Conditioning modules import their ray embedding from training.plucker
    (an import statement found by parsing; a mention in a comment does not count)."""
    if "training.plucker" not in src:
        return False
    try:
        tree = ast.parse(src)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "training.plucker":
            return True
        if isinstance(node, ast.Import) and any(a.name == "training.plucker" for a in node.names):
            return True
    return False


def _official_modules(theirs: dict[str, _Signature]) -> tuple[str, ...]:
    """Our counterpart of the official-release module `theirs` (the first whose classes `theirs`
    all define), followed by the modules it takes its dense layers from; () if none fits."""
    for module_name, bases in OFFICIAL_FAMILIES.items():
        if set(_family_interface(module_name)) <= set(theirs):
            return (module_name,) + bases
    return ()


def candidate_modules(record: PersistentRecord) -> list[str]:
    """Our modules that may rebuild `record`, best first; empty if its source is not recognised."""
    exact = [m for m in family_modules() + tuple(OFFICIAL_FAMILIES) if _family_source(m) == record.module_src]
    if exact:
        return [m for m in exact if isinstance(getattr(importlib.import_module(m), record.class_name, None), type)]
    theirs = _foreign_interface(record.module_src)
    if not theirs or record.class_name not in theirs:
        return []
    modules = family_modules()
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


class Budget:
    """Bytes of parameters and buffers that the networks built from one file may take: twice the
    file's size plus `BUDGET_SLACK`. A real snapshot stores every tensor it needs, so it fits;
    a 12 KB file claiming z_dim=16384 (3.5 GB of weights) does not."""

    def __init__(self, file_size: int):
        self.left = 2 * int(file_size) + BUDGET_SLACK
        self.networks = 0

    def take(self, nbytes: int, what: str, name: str) -> None:
        self.networks += 1
        if self.networks > MAX_NETWORKS:
            raise NetworkLoadError(f"{name}: holds more than {MAX_NETWORKS} networks (a snapshot holds G, D, G_ema "
                                   f"and an augment pipe)")
        if nbytes > self.left:
            raise NetworkLoadError(f"{name}: {what} would need {nbytes / 2**20:.1f} MiB of weights, more than the "
                                   f"file's size allows ({max(self.left, 0) / 2**20:.1f} MiB): its constructor "
                                   f"arguments do not describe the weights it holds")
        self.left -= nbytes


def _network_class(class_name: str) -> type:
    module_name, _, attr = class_name.rpartition(".")
    return getattr(importlib.import_module(module_name), attr)


def _bind(cls: type, args, kwargs) -> dict:
    """Positional and keyword arguments as one flat dict of keyword arguments (what **kwargs
    forwards is merged in), or TypeError when `cls` does not take them."""
    init = inspect.signature(cls.__init__)
    bound = init.bind_partial(None, *args, **kwargs).arguments
    flat = {}
    for pname, value in list(bound.items())[1:]:
        if init.parameters[pname].kind == inspect.Parameter.VAR_KEYWORD:
            flat.update(value)
        elif init.parameters[pname].kind == inspect.Parameter.VAR_POSITIONAL:
            if value:
                raise TypeError("takes no further positional arguments")
        else:
            flat[pname] = value
    return flat


def _parameter_bytes(cls: type, kwargs: dict) -> int:
    """Bytes of the parameters and buffers `cls(**kwargs)` would hold, from a build on fake tensors
    (shapes without memory). Raises what the constructor raises."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    with _preserved_rng(), FakeTensorMode(allow_non_fake_inputs=True):
        net = cls(**kwargs)
        return sum(t.numel() * t.element_size() for t in itertools.chain(net.parameters(), net.buffers()))


def build_network(class_name, args, kwargs, name: str, field: str, budget: Budget | None) -> torch.nn.Module:
    """Construct one of the families' classes from arguments read from a file, after checking them:
    `class_name` must be in the table exactly, the arguments must be ones the class takes and
    within the families' limits, and the network must fit `budget`. Every refusal is a
    NetworkLoadError naming the file (`name`) and `field`; raises TypeError when the class does not
    take the arguments (the caller may try another class)."""
    if not families.is_network_class(class_name):
        raise NetworkLoadError(f"{name}: {field} names class {str(class_name)[:80]!r}, which is not a network class "
                               f"of this project ({', '.join(families.network_classes())})")
    if not isinstance(args, (list, tuple)) or not isinstance(kwargs, dict):
        raise NetworkLoadError(f"{name}: {field} has constructor arguments that are not a list and a dict")
    cls = _network_class(class_name)
    flat = _bind(cls, args, kwargs)
    problem = families.check_kwargs(families.NETWORK_KWARGS, flat, "")
    if problem:
        raise NetworkLoadError(f"{name}: {field} argument {problem}")
    if budget is not None:
        try:
            nbytes = _parameter_bytes(cls, flat)
        except (TypeError, ValueError, AssertionError, KeyError, IndexError, ZeroDivisionError):
            raise                                       # the constructor refuses these arguments
        except Exception as e:  # noqa: BLE001 - unknown size: never built for real (every family builds on fake tensors)
            raise NetworkLoadError(f"{name}: {field}: the size of {class_name} with these arguments cannot be "
                                   f"estimated ({type(e).__name__})") from None
        budget.take(nbytes, f"{field} ({class_name.rsplit('.', 1)[-1]})", name)
    with _preserved_rng():
        return cls(**flat)


def _build(module_name: str, record: PersistentRecord, name: str, field: str, budget: Budget | None) -> torch.nn.Module:
    class_name = f"{module_name}.{record.class_name}"
    if not families.is_network_class(class_name):
        raise _Mismatch(f"{record.class_name} is not a network that a file may hold at its top level")
    args = record.state.get("_init_args", ())
    kwargs = record.state.get("_init_kwargs", {})
    try:
        net = build_network(class_name, args, kwargs, name, field, budget)
    except (TypeError, ValueError, AssertionError, KeyError, IndexError, ZeroDivisionError) as e:
        if isinstance(e, NetworkLoadError):
            raise
        raise _Mismatch(f"{class_name} does not accept the stored arguments ({type(e).__name__}: {e})") from None
    pairs: list = []
    _match(record, net, "", pairs)
    with torch.no_grad():
        for ours, theirs in pairs:
            ours.copy_(theirs)
            if isinstance(ours, torch.nn.Parameter):
                ours.requires_grad_(theirs.requires_grad)
    return net


def _source_is_ours(record: PersistentRecord) -> bool:
    return any(_family_source(m) == record.module_src for m in family_modules() + tuple(OFFICIAL_FAMILIES))


def rebuild_record(record, name: str = "the file", field: str = "the network",
                   budget: Budget | None = None) -> torch.nn.Module:
    """Build our network for one top-level record. Raises UntrustedPickleError when only running the
    file's own code could load it (source not recognised, or a foreign source whose weights do not
    fit ours), NetworkLoadError for data that no code makes right (arguments out of bounds, more
    weights than the file holds, our own source with weights that do not fit)."""
    if not isinstance(record, PersistentRecord):      # torch's own class: running it would not make it a network
        raise NetworkLoadError(f"{name}: {field} is a bare {record.qualname}, not a network of a known family")
    candidates = candidate_modules(record)
    if not candidates:
        raise UntrustedPickleError([describe(record)], name, _refusal_detail(record))
    problems = []
    for module_name in candidates:
        try:
            return _build(module_name, record, name, field, budget)
        except _Mismatch as e:
            problems.append(str(e))
    if _source_is_ours(record):
        raise NetworkLoadError(f"{name}: {field} does not fit this project's {record.class_name}: {problems[0]}")
    raise UntrustedPickleError([describe(record)], name,
                               f"its stored weights do not fit this project's {record.class_name}: {problems[0]}")


def rebuild_tree(obj, name: str = "the file", budget: Budget | None = None):
    """Replace every record in a safely unpickled snapshot (dicts, lists, tuples) by our network.
    Refusals that only code could fix are collected over the whole file so that one error names
    every class; data errors raise at once. Shared containers are visited once."""
    done: dict[int, tuple] = {}          # id -> (the original, kept alive so ids stay unique; its result)
    refused: list[str] = []
    details: list[str] = []

    def rebuilt(value, key):
        optional = key in OPTIONAL_KEYS and isinstance(value, PersistentRecord) and candidate_modules(value)
        try:
            return rebuild_record(value, name, str(key) if key is not None else "a network", budget)
        except UntrustedPickleError as e:
            if not optional:
                refused.extend(e.names)
                details.append(e.detail)
        except NetworkLoadError:
            if not optional:
                raise
        return None

    def visit(value, key=None):
        if id(value) in done:
            return done[id(value)][1]
        if isinstance(value, (PersistentRecord, ModuleRecord)):
            result = rebuilt(value, key)
        elif isinstance(value, dict):
            done[id(value)] = (value, value)
            for k in list(value):
                value[k] = visit(value[k], k)
            result = value
        elif isinstance(value, list):
            done[id(value)] = (value, value)
            value[:] = [visit(v) for v in value]
            result = value
        elif isinstance(value, tuple):
            result = tuple(visit(v) for v in value)
        else:
            return value
        done[id(value)] = (value, result)
        return result

    result = visit(obj)
    if refused:
        raise UntrustedPickleError(refused, name, details[0])
    return result

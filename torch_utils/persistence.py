"""Self-contained network pickles.

A class decorated with `@persistent_class` pickles each instance together with the full source
text of the module that defined it, so the pickle loads in a process where that module is not
importable (or has changed since). The on-disk format is the one NVIDIA's StyleGAN2-ADA/StyleGAN3
releases use (see docs/compatibility.md): the object reduces to a call of
`torch_utils.persistence._reconstruct_persistent_obj(meta)` with
meta = {type: 'class', version: 6, module_src, class_name, state}.
"""

from __future__ import annotations

import copy
import inspect
import io
import pickle
import sys
import types
import uuid
from typing import Any, Callable

import dnnlib

_version = 6
_decorators: set[type] = set()
_import_hooks: list[Callable] = []
_module_to_src_dict: dict[types.ModuleType, str] = {}
_src_to_module_dict: dict[str, types.ModuleType] = {}


def persistent_class(orig_class: type) -> type:
    """Class decorator: instances remember their constructor arguments and pickle with their
    module's source code."""
    if not isinstance(orig_class, type):
        raise TypeError("persistent_class must decorate a class")
    if is_persistent(orig_class):
        return orig_class

    orig_module = sys.modules[orig_class.__module__]
    orig_module_src = _module_to_src(orig_module)

    class Decorator(orig_class):
        _orig_module_src = orig_module_src
        _orig_class_name = orig_class.__name__

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            # The outermost decorated class runs this last, so its arguments win.
            self._init_args = copy.deepcopy(args)
            self._init_kwargs = copy.deepcopy(kwargs)

        @property
        def init_args(self):
            return copy.deepcopy(self._init_args)

        @property
        def init_kwargs(self):
            return dnnlib.EasyDict(copy.deepcopy(self._init_kwargs))

        def __reduce__(self):
            fields = list(super().__reduce__())
            fields += [None] * max(3 - len(fields), 0)
            if fields[0] is not _reconstruct_persistent_obj:
                meta = dict(type="class", version=_version, module_src=self._orig_module_src,
                            class_name=self._orig_class_name, state=fields[2])
                fields[0] = _reconstruct_persistent_obj
                fields[1] = (meta,)
                fields[2] = None
            return tuple(fields)

    # inspect.signature(cls.__init__) shows the real constructor arguments, not (*args, **kwargs).
    Decorator.__init__.__wrapped__ = orig_class.__init__
    Decorator.__name__ = orig_class.__name__
    Decorator.__qualname__ = orig_class.__qualname__
    Decorator.__module__ = orig_class.__module__
    Decorator.__doc__ = orig_class.__doc__
    _decorators.add(Decorator)
    return Decorator


def is_persistent(obj: Any) -> bool:
    """True for a persistent class or an instance of one."""
    try:
        if obj in _decorators:
            return True
    except TypeError:
        pass
    return type(obj) in _decorators


def import_hook(hook: Callable[[dnnlib.EasyDict], dnnlib.EasyDict | None]) -> Callable:
    """Register a function that may rewrite `meta` (e.g. patch old source) before loading."""
    if not callable(hook):
        raise TypeError("import hook must be callable")
    _import_hooks.append(hook)
    return hook


def _reconstruct_persistent_obj(meta: dict) -> Any:
    """Unpickling entry point named inside every persistent pickle."""
    meta = dnnlib.EasyDict(meta)
    meta.state = dnnlib.EasyDict(meta.state if meta.state is not None else {})
    for hook in _import_hooks:
        result = hook(meta)
        if result is not None:
            meta = result
    if meta.type != "class":
        raise pickle.UnpicklingError(f"unknown persistent object type {meta.type!r}")
    if meta.version > _version:
        raise pickle.UnpicklingError(
            f"persistent object version {meta.version} is newer than supported ({_version})")
    module = _src_to_module(meta.module_src)
    cls = getattr(module, meta.class_name)
    obj = cls.__new__(cls)
    setstate = getattr(obj, "__setstate__", None)
    if callable(setstate):
        setstate(meta.state)
    else:
        obj.__dict__.update(meta.state)
    return obj


def _module_to_src(module: types.ModuleType) -> str:
    src = _module_to_src_dict.get(module)
    if src is None:
        src = inspect.getsource(module)
        _module_to_src_dict[module] = src
        _src_to_module_dict[src] = module
    return src


def _src_to_module(src: str) -> types.ModuleType:
    """Execute `src` as a fresh module, once per distinct source text."""
    module = _src_to_module_dict.get(src)
    if module is None:
        module_name = "_imported_module_" + uuid.uuid4().hex
        module = types.ModuleType(module_name)
        sys.modules[module_name] = module
        _module_to_src_dict[module] = src
        _src_to_module_dict[src] = module
        exec(compile(src, f"<persistent module {module_name}>", "exec"), module.__dict__)
    return module


def _check_pickleable(obj: Any) -> None:
    """Raise if `obj` holds anything that cannot go into a snapshot (e.g. a live CUDA stream)."""

    def recurse(o):
        if isinstance(o, (list, tuple, set)):
            return [recurse(x) for x in o]
        if isinstance(o, dict):
            return [[recurse(k), recurse(v)] for k, v in o.items()]
        if isinstance(o, (str, int, float, bool, bytes, bytearray)) or o is None:
            return None
        if f"{type(o).__module__}.{type(o).__name__}" in (
                "numpy.ndarray", "torch.Tensor", "torch.nn.parameter.Parameter"):
            return None
        if is_persistent(o):
            return None
        return o

    with io.BytesIO() as f:
        pickle.dump(recurse(obj), f)

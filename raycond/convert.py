"""Convert any loadable network file into a safe weight file (no code inside).

    python -m raycond.convert IN.pkl OUT.safetensors [--trust-pickle] [--keys G_ema,G,D]
    python -m raycond.convert IN.pkl OUT.pt            # torch file readable with weights_only=True

The output holds each network's tensors plus its class name and constructor arguments (and
JSON-able extras such as camera_stats); every tool opens it through raycond.loading. With
--trust-pickle the input is loaded the trusting way (its code runs, once, here); networks whose
classes came from the file's own source are then rebuilt from this project's classes, because a
safe file can only name classes that this installation implements.
"""

from __future__ import annotations

import argparse
import os
import sys

from raycond import runtime  # first: it chooses OpenMP's wait policy before torch loads
import torch

from raycond import loading, rebuild, safe_weights
from raycond.safe_pickle import NetworkLoadError, PersistentRecord

EXTRA_KEYS = ("camera_stats", "training_set_kwargs", "kimg")


def _as_our_class(net: torch.nn.Module, key: str) -> torch.nn.Module:
    """A network executed from pickled source, rebuilt as the matching class of this project."""
    if not type(net).__module__.startswith("_imported_module_"):
        return net
    src = getattr(type(net), "_orig_module_src", None)
    if src is None:
        raise NetworkLoadError(f"network {key!r} is a {type(net).__name__} without a recorded module source")
    record = PersistentRecord(type(net).__name__, src, _record_state(net))
    return rebuild.rebuild_record(record, f"network {key!r}")


def _record_state(module: torch.nn.Module) -> dict:
    """The instance state as a persistent record holds it, with nested modules as records."""
    state = dict(module.__dict__)
    state["_modules"] = {}
    for name, sub in module._modules.items():
        if sub is None:
            state["_modules"][name] = None
        elif hasattr(type(sub), "_orig_module_src"):
            state["_modules"][name] = PersistentRecord(type(sub).__name__, type(sub)._orig_module_src,
                                                       _record_state(sub))
        else:
            from raycond.safe_pickle import ModuleRecord
            rec = ModuleRecord()
            rec.qualname = f"{type(sub).__module__}.{type(sub).__qualname__}"
            rec.state = _record_state(sub)
            state["_modules"][name] = rec
    return state


def convert(src: str, dst: str, keys=("G_ema", "G", "D"), trust_pickle: bool = False) -> dict:
    """Write `dst` (.safetensors or .pt) from the networks of `src`. Returns {key: class name}."""
    ext = os.path.splitext(dst)[1].lower()
    if ext not in (".safetensors", ".pt"):
        raise NetworkLoadError(f"output {dst} must end in .safetensors or .pt")
    snapshot = loading.load_snapshot(src, trust_pickle=trust_pickle)
    nets = {k: _as_our_class(snapshot[k], k) for k in keys if isinstance(snapshot.get(k), torch.nn.Module)}
    if not nets:
        present = ", ".join(k for k, v in snapshot.items() if isinstance(v, torch.nn.Module)) or "none"
        raise NetworkLoadError(f"{src} has no network under {', '.join(keys)} (networks present: {present})")
    extra = {k: snapshot[k] for k in EXTRA_KEYS if snapshot.get(k) is not None}
    if "training_set_kwargs" in extra:
        extra["training_set_kwargs"] = dict(extra["training_set_kwargs"])
    refused = []
    for key in list(extra):      # the output holds only what the loader accepts
        try:
            safe_weights.check_extra(key, extra[key])
        except NetworkLoadError as e:
            refused.append(str(e))
            del extra[key]
    if ext == ".safetensors":
        dropped = safe_weights.save_safetensors(dst, nets, **extra)
        if dropped:
            print(f"note: left out {', '.join(dropped)} (not plain JSON values)", file=sys.stderr)
    else:
        loading.save_safe_weights(dst, nets, **extra)
    for reason in refused:
        print(f"note: left out {reason}", file=sys.stderr)
    return {k: safe_weights.class_name_of(v) for k, v in nets.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m raycond.convert", description=__doc__.split("\n\n")[0])
    parser.add_argument("src", metavar="IN", help="network file: .pkl snapshot, run directory, URL, or a weight file")
    parser.add_argument("dst", metavar="OUT", help="output: .safetensors (preferred) or .pt")
    parser.add_argument("--keys", default="G_ema,G,D", help="networks to keep, comma-separated (default: G_ema,G,D)")
    parser.add_argument("--trust-pickle", action="store_true",
                        help="load IN the trusting way (runs code from the file); only for files you trust")
    parser.add_argument("--threads", type=int, default=0, help=runtime.THREADS_HELP)
    opts = parser.parse_args(argv)
    runtime.start(opts.threads)
    try:
        written = convert(opts.src, opts.dst, tuple(k.strip() for k in opts.keys.split(",") if k.strip()),
                          trust_pickle=opts.trust_pickle)
    except (NetworkLoadError, OSError) as e:
        print(f"error: {str(e).splitlines()[0]}", file=sys.stderr)
        return 1
    for key, cls in written.items():
        print(f"{key}: {cls}")
    print(f"wrote {opts.dst}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

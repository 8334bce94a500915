"""Safe loading: network pickles open without running code from the file.

Every network family is rebuilt from this project's classes and must render exactly (max abs
difference 0) what the trusting load renders. Hostile files are refused with one clear error and
their side effect never happens."""

from __future__ import annotations

import os
import pickle
import resource
import struct
import subprocess
import sys

import pytest
import torch

import dnnlib
from raycond import camera, loading
from raycond.loading import UntrustedPickleError, load_snapshot
from torch_utils import persistence

from hostile_corpus import storage_claiming  # tests/ is on sys.path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SG2_SMALL = dict(z_dim=16, w_dim=16, img_resolution=16, img_channels=3, channel_base=256, channel_max=16,
                 mapping_kwargs=dict(num_layers=2))
SG3_SMALL = dict(z_dim=16, w_dim=16, img_resolution=16, img_channels=3, channel_base=1024, channel_max=32,
                 num_layers=4, num_critical=1, margin_size=2)
FAMILIES = {
    "stylegan2": ("training.networks_stylegan2.Generator", dict(c_dim=0, **SG2_SMALL)),
    "raycond2": ("training.networks_raycond2.Generator", dict(c_dim=25, **SG2_SMALL)),
    "posecond2": ("training.networks_raycond2.Generator", dict(c_dim=25, embedding="none", camera_in_mapping=True,
                                                               **SG2_SMALL)),
    "raycond2-D": ("training.networks_raycond2.Discriminator", dict(c_dim=25, img_resolution=16, img_channels=3,
                                                                    channel_base=256, channel_max=16,
                                                                    epilogue_kwargs=dict(mbstd_group_size=2))),
    "stylegan3": ("training.networks_stylegan3.Generator", dict(c_dim=0, **SG3_SMALL)),
    "raycond3": ("training.networks_raycond3.Generator", dict(c_dim=25, **SG3_SMALL)),
    "augment": ("training.augment.AugmentPipe", dict(brightness=1, contrast=1, hue=1, saturation=1, noise=1)),
}


def _trained(net: torch.nn.Module) -> torch.nn.Module:
    """Move every tensor away from its initial value, so an uncopied tensor shows in the output."""
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for t in list(net.parameters()) + list(net.buffers()):
            if t.is_floating_point():
                t.add_(torch.randn(t.shape, generator=g) * 0.05)
    return net.eval().requires_grad_(False)


def _build(family: str) -> torch.nn.Module:
    class_name, kwargs = FAMILIES[family]
    torch.manual_seed(0)
    net = _trained(dnnlib.util.construct_class_by_name(class_name=class_name, **kwargs))
    if family == "augment":
        net.p.fill_(0.8)
    return net


def _outputs(net: torch.nn.Module) -> list[torch.Tensor]:
    """What each family computes, with fixed inputs and fixed random streams."""
    img = torch.randn([2, 3, 16, 16], generator=torch.Generator().manual_seed(1))
    c = camera.camera_label([20.0, -15.0], [5.0, 0.0])
    if hasattr(net, "synthesis"):
        z = torch.randn([2, net.z_dim], generator=torch.Generator().manual_seed(2))
        cc = c if net.c_dim else torch.zeros([2, 0])
        outs = [net(z, cc, truncation_psi=0.7, noise_mode="const")]
        torch.manual_seed(3)
        outs.append(net(z, cc, noise_mode="random"))
        return outs
    if hasattr(net, "p"):
        torch.manual_seed(3)
        return [net(img)]
    return [net(img, c)]


def _write(tmp_path, obj, name="net.pkl", protocol=pickle.DEFAULT_PROTOCOL) -> str:
    path = tmp_path / name
    path.write_bytes(pickle.dumps(obj, protocol=protocol))
    return str(path)


def _assert_same(safe: torch.nn.Module, trusted: torch.nn.Module) -> None:
    with torch.no_grad():
        for a, b in zip(_outputs(safe), _outputs(trusted), strict=True):
            assert a.shape == b.shape
            assert (a - b).abs().max().item() == 0


@pytest.mark.parametrize("family", list(FAMILIES))
def test_safe_load_renders_like_trusting_load(tmp_path, family):
    net = _build(family)
    key = {"raycond2-D": "D", "augment": "augment_pipe"}.get(family, "G_ema")
    path = _write(tmp_path, {key: net, "training_set_kwargs": dnnlib.EasyDict(resolution=16)})
    safe, trusted = load_snapshot(path), load_snapshot(path, trust_pickle=True)
    assert type(safe[key]).__module__ == FAMILIES[family][0].rsplit(".", 1)[0]
    assert type(safe["training_set_kwargs"]) is dnnlib.EasyDict
    _assert_same(safe[key], trusted[key])


@pytest.mark.parametrize("module_name, family", [("training.networks_stylegan2", "stylegan2"),
                                                 ("training.networks_stylegan3", "stylegan3")])
def test_release_copy_of_a_family_module_is_rebuilt_from_ours(tmp_path, module_name, family):
    """A pickle whose embedded source is another text of a family we implement (as NVIDIA's
    releases are) is rebuilt from our class, never executed, and renders like executing it."""
    import importlib
    import inspect
    src = "# A release copy of this module: same classes, other text.\n" + \
        inspect.getsource(importlib.import_module(module_name)).replace("\n\n\n", "\n\n\n# --\n")
    foreign = persistence._src_to_module(src)
    class_name, kwargs = FAMILIES[family]
    torch.manual_seed(0)
    G = _trained(foreign.Generator(**kwargs))
    path = _write(tmp_path, {"G_ema": G}, protocol=2)
    safe = load_snapshot(path)["G_ema"]
    assert type(safe).__module__ == module_name
    _assert_same(safe, load_snapshot(path, trust_pickle=True)["G_ema"])


def test_own_snapshot_with_d_and_augment_pipe_loads_without_trust(tmp_path, small_generator):
    snapshot = {"G": small_generator, "G_ema": small_generator, "D": _build("raycond2-D"),
                "augment_pipe": _build("augment"), "progress": {"cur_nimg": 4000, "augment_p": 0.8},
                "training_set_kwargs": dnnlib.EasyDict(path="x.zip", camera_stats={"radius": 2.7})}
    data = load_snapshot(_write(tmp_path, snapshot))
    assert data["G"] is data["G_ema"]
    assert data["progress"] == {"cur_nimg": 4000, "augment_p": 0.8}
    assert data["training_set_kwargs"].camera_stats == {"radius": 2.7}


def test_safe_load_keeps_the_callers_random_stream(small_pickle):
    torch.manual_seed(11)
    expected = torch.rand(3)
    torch.manual_seed(11)
    load_snapshot(small_pickle)
    assert torch.equal(torch.rand(3), expected)


# ----------------------------------------------------------------------------- hostile files

class _Reduce:
    """Pickles as a call of `func(*args)`: what a hostile file does."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _refused(path) -> UntrustedPickleError:
    with pytest.raises(UntrustedPickleError) as info:
        loading.load_network(path)
    assert "--trust-pickle" in str(info.value) and "\n" not in str(info.value)
    return info.value


def test_refuses_reduce_that_calls_os_system(tmp_path):
    marker = tmp_path / "pwned"
    path = _write(tmp_path, {"G_ema": _Reduce(os.system, f"touch {marker}")})
    err = _refused(path)
    assert err.names == [f"global {os.system.__module__}.system"]
    assert not marker.exists()


@pytest.mark.parametrize("func", [eval, exec])
def test_refuses_pickle_that_imports_eval_or_exec(tmp_path, func):
    marker = tmp_path / "pwned"
    path = _write(tmp_path, {"G_ema": _Reduce(func, f"open({str(marker)!r}, 'w').write('x')")})
    assert _refused(path).names == [f"global builtins.{func.__name__}"]
    assert not marker.exists()


def test_refuses_subprocess_popen_and_names_every_global(tmp_path):
    marker = tmp_path / "pwned"
    path = _write(tmp_path, {"G_ema": _Reduce(subprocess.Popen, ["touch", str(marker)]),
                             "D": _Reduce(open, str(marker), "w")})
    assert _refused(path).names == ["global io.open", "global subprocess.Popen"]
    assert not marker.exists()


def _persistent_pickle(module_src: str, class_name="Generator", state=None) -> bytes:
    meta = dict(type="class", version=6, module_src=module_src, class_name=class_name, state=state or {})
    return pickle.dumps({"G_ema": _Reduce(persistence._reconstruct_persistent_obj, meta)})


def test_refuses_persistent_record_whose_source_writes_a_file(tmp_path):
    marker = tmp_path / "pwned"
    src = f"open({str(marker)!r}, 'w').write('x')\nclass Generator:\n    def __init__(self, res): pass\n"
    path = tmp_path / "net.pkl"
    path.write_bytes(_persistent_pickle(src))
    err = _refused(str(path))
    assert err.names == ["persistent class Generator"] and "does not match" in str(err)
    assert not marker.exists()
    loading.load_snapshot(str(path), trust_pickle=True)   # the trusting load does run it
    assert marker.exists()


def test_refuses_unknown_persistent_class(tmp_path):
    path = tmp_path / "net.pkl"
    path.write_bytes(_persistent_pickle("import torch\nclass Painter(torch.nn.Module):\n    pass\n", "Painter"))
    assert _refused(str(path)).names == ["persistent class Painter"]


def test_refuses_known_class_whose_weights_do_not_fit_as_data(tmp_path):
    """The class and source are ours but the file has a tensor ours lacks: a partial load would
    render something else, and running the file's code would not help, so it is a data error
    (the visualizer does not offer to trust it)."""
    fn, (meta,), _ = _build("stylegan2").__reduce__()[:3]
    meta = dict(meta, state=dict(meta["state"], _buffers={"extra": torch.zeros(1)}))
    path = tmp_path / "net.pkl"
    path.write_bytes(pickle.dumps({"G_ema": _Reduce(fn, meta)}))
    with pytest.raises(loading.NetworkLoadError) as info:
        loading.load_network(str(path))
    assert not isinstance(info.value, UntrustedPickleError)
    assert "unexpected ['extra']" in str(info.value) and str(info.value).startswith(str(path))
    assert "--trust-pickle" not in str(info.value)


@pytest.mark.parametrize("opcode", [b"\x8e", b"\x8d"])     # BINBYTES8, BINUNICODE8
def test_refuses_length_field_claiming_terabytes(tmp_path, opcode):
    path = tmp_path / "bomb.pkl"
    path.write_bytes(b"\x80\x04" + opcode + struct.pack("<Q", 1 << 42) + b"abc.")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(loading.NetworkLoadError, match="not a readable network pickle"):
        loading.load_network(str(path))
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100 * 1024   # KiB


def test_refuses_tensor_storage_claiming_a_huge_size(tmp_path):
    path = tmp_path / "bomb.pkl"
    path.write_bytes(pickle.dumps({"G_ema": _Reduce(torch.storage._load_from_bytes, storage_claiming(1 << 40))}))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(loading.NetworkLoadError, match="claims 1099511627776 elements but holds 16 bytes"):
        loading.load_network(str(path))
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100 * 1024


def test_weight_file_cannot_name_an_arbitrary_function(tmp_path):
    marker = tmp_path / "pwned"
    payload = {"format": loading.SAFE_FORMAT, "networks": {"G_ema": {
        "class_name": "os.system", "init_args": [f"touch {marker}"], "init_kwargs": {}, "state_dict": {}}}}
    torch.save(payload, tmp_path / "w.pt")
    with pytest.raises(loading.NetworkLoadError, match="names class .os.system., which is not a network class of this project"):
        loading.load_network(str(tmp_path / "w.pt"))
    assert not marker.exists()


def test_cli_refusal_is_one_line(tmp_path):
    marker = tmp_path / "pwned"
    path = _write(tmp_path, {"G_ema": _Reduce(os.system, f"touch {marker}")})
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=ROOT)
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "gen_images.py"), "--network", path, "--seeds", "0",
                           "--outdir", str(tmp_path / "out")], env=env, cwd=str(tmp_path), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "--trust-pickle" in lines[0] and "posix.system" in lines[0], proc.stderr
    assert not marker.exists()


def test_official_release_record_is_refused_with_a_reason(tmp_path):
    src = "from training.plucker import plucker_embedding\nclass Generator:\n    def __init__(self, z_dim): pass\n"
    path = tmp_path / "net.pkl"
    path.write_bytes(_persistent_pickle(src))
    assert "official Ray Conditioning" in str(_refused(str(path)))


# ----------------------------------------------------------------------------- conversion

def test_convert_to_safetensors_renders_identically(tmp_path, small_pickle):
    from raycond.convert import main
    out = tmp_path / "net.safetensors"
    assert main([small_pickle, str(out)]) == 0
    assert out.read_bytes()[8:9] == b"{"
    G, info = loading.load_network_and_info(str(out))
    G0, info0 = loading.load_network_and_info(small_pickle)
    assert type(G).__module__ == "training.networks_raycond2" and info.camera_stats == info0.camera_stats
    _assert_same(G, G0)


def test_convert_trusted_pickle_rebuilds_its_networks_as_ours(tmp_path):
    """With --trust-pickle a file refused for some other content converts; its networks, executed
    from a release copy of our module, are written under our class names."""
    import collections
    import inspect
    from raycond.convert import main
    from training import networks_stylegan2
    foreign = persistence._src_to_module("# release copy\n" + inspect.getsource(networks_stylegan2))
    torch.manual_seed(0)
    G = _trained(foreign.Generator(**FAMILIES["stylegan2"][1]))
    path = _write(tmp_path, {"G_ema": G, "stats": _Reduce(collections.Counter, [1, 1])})
    out = str(tmp_path / "net.safetensors")
    assert main([path, out]) == 1 and not os.path.exists(out)
    assert main([path, out, "--trust-pickle"]) == 0
    converted = loading.load_network(out)
    assert type(converted).__module__ == "training.networks_stylegan2"
    _assert_same(converted, load_snapshot(path, trust_pickle=True)["G_ema"])


# ----------------------------------------------------------------------------- visualizer

def test_visualizer_asks_then_renders_the_file_with_trust(tmp_path, small_generator):
    import collections
    from viz.network import NetworkWidget
    from viz.renderer import RenderArgs, Renderer
    path = _write(tmp_path, {"G_ema": small_generator, "stats": _Reduce(collections.Counter, [1])})
    network, renderer, args = NetworkWidget(), Renderer(), {}
    network.load(path)
    network.update_args(args)
    res = renderer.render(RenderArgs(**args))
    assert res.untrusted == ("global collections.Counter",) and "--trust-pickle" in res.error
    assert network.trust.offer(res, network.current)
    assert network.trust.question() == ("This file contains code that will run on your machine: "
                                        "global collections.Counter. Load anyway?")
    assert network.trust.answer(True)
    network.update_args(args)
    res = renderer.render(RenderArgs(**args))
    assert res.error is None and res.image is not None
    assert not network.trust.offer(res, network.current)


def test_visualizer_does_not_ask_again_after_no(tmp_path):
    from types import SimpleNamespace
    from viz.trust_dialog import TrustDialog
    path = _write(tmp_path, {"G_ema": _Reduce(os.system, "true")}, name="evil.pkl")
    refusal = SimpleNamespace(untrusted=("global posix.system",), args=SimpleNamespace(pkl=path))
    dialog = TrustDialog()
    assert dialog.offer(refusal, path)
    assert not dialog.answer(False)
    assert not dialog.offer(refusal, path) and not dialog.is_trusted(path)


def test_visualizer_consent_is_bound_to_the_file_content(tmp_path, small_generator):
    """Yes trusts the bytes that were shown: a file replaced at the same path is refused again
    (its code does not run) and the question is asked again."""
    import collections
    from viz.network import NetworkWidget
    from viz.renderer import RenderArgs, Renderer
    marker = tmp_path / "pwned"
    path = _write(tmp_path, {"G_ema": small_generator, "stats": _Reduce(collections.Counter, [1])})
    network, renderer, args = NetworkWidget(), Renderer(), {}
    network.load(path)
    network.update_args(args)
    assert network.trust.offer(renderer.render(RenderArgs(**args)), network.current)
    assert network.trust.answer(True)
    network.update_args(args)
    assert args["trust_pickle"] == loading.digest_of(path)
    assert renderer.render(RenderArgs(**args)).error is None

    _write(tmp_path, {"G_ema": small_generator, "stats": _Reduce(os.system, f"touch {marker}")})
    os.utime(path, (1, 1))                                   # a new modification time: the renderer reloads
    network.update_args(args)
    res = renderer.render(RenderArgs(**args))
    assert not marker.exists()
    assert res.untrusted == (f"global {os.system.__module__}.system",)
    assert network.trust.offer(res, network.current)        # asked again, about the new content
    assert network.trust.question().endswith(f"global {os.system.__module__}.system. Load anyway?")
    assert not network.trust.answer(False)
    assert not network.trust.offer(res, network.current)


def test_trust_digest_loads_only_those_bytes(tmp_path, small_generator):
    import collections
    path = _write(tmp_path, {"G_ema": small_generator, "stats": _Reduce(collections.Counter, [1])})
    digest = loading.digest_of(path)
    assert isinstance(load_snapshot(path, trust_pickle=digest)["stats"], collections.Counter)
    _write(tmp_path, {"G_ema": small_generator, "stats": _Reduce(collections.Counter, [2])})
    with pytest.raises(UntrustedPickleError) as info:
        load_snapshot(path, trust_pickle=digest)
    assert info.value.digest == loading.digest_of(path) != digest


def test_convert_snapshot_whose_g_is_g_ema_writes_both(tmp_path, small_generator):
    """Tiny or exported snapshots may hold one network object under two keys; safetensors refuses
    shared memory, so the writer copies the second reference."""
    from raycond.convert import main
    path = _write(tmp_path, {"G": small_generator, "G_ema": small_generator})
    out = tmp_path / "net.safetensors"
    assert main([path, str(out), "--keys", "G_ema,G"]) == 0
    _assert_same(loading.load_network(str(out)), small_generator)


@pytest.mark.parametrize("protocol", [0, 1])
@pytest.mark.parametrize("family", ["raycond2", "stylegan3", "raycond2-D"])
def test_protocol_0_and_1_pickles_load_without_trust(tmp_path, family, protocol):
    """Old protocols rebuild dict subclasses and plain objects through copyreg._reconstructor."""
    net = _build(family)
    key = "D" if family == "raycond2-D" else "G_ema"
    path = _write(tmp_path, {key: net, "training_set_kwargs": dnnlib.EasyDict(resolution=16)}, protocol=protocol)
    assert b"_reconstructor" in open(path, "rb").read()
    safe, trusted = load_snapshot(path), load_snapshot(path, trust_pickle=True)
    assert type(safe["training_set_kwargs"]) is dnnlib.EasyDict and safe["training_set_kwargs"].resolution == 16
    _assert_same(safe[key], trusted[key])


def test_copyreg_reconstructor_rebuilds_nothing_but_allowed_dicts(tmp_path):
    import copyreg
    marker = tmp_path / "pwned"
    # A refused global stays refused (and is never called) when it comes through _reconstructor.
    path = _write(tmp_path, {"G_ema": _Reduce(copyreg._reconstructor, _Reduce, object, None),
                             "x": _Reduce(os.system, f"touch {marker}")}, protocol=0)
    assert f"global {os.system.__module__}.system" in _refused(path).names
    assert not marker.exists()
    # An allowed class on a base it does not have is refused as malformed, not built.
    path = _write(tmp_path, {"G_ema": _Reduce(copyreg._reconstructor, dnnlib.EasyDict, object, None)}, protocol=0,
                  name="bad.pkl")
    with pytest.raises(loading.NetworkLoadError, match="_reconstructor of 'EasyDict' on 'object' is not allowed"):
        load_snapshot(path)

"""Persistent pickles load where their defining module is not importable, and give the same image.

The network module below is written the way foreign releases write theirs (it calls only the
host-tree names listed in docs/compatibility.md)."""

import os
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

FOREIGN_MODULE = textwrap.dedent('''
    import numpy as np
    import torch
    from torch_utils import misc, persistence
    from torch_utils.ops import bias_act, upfirdn2d, conv2d_resample, fma
    import dnnlib

    @misc.profiled_function
    def normalize(x):
        return x * (x.square().mean(dim=1, keepdim=True) + 1e-8).rsqrt()

    @persistence.persistent_class
    class Mapping(torch.nn.Module):
        def __init__(self, z_dim, w_dim, num_ws):
            super().__init__()
            self.z_dim, self.w_dim, self.num_ws, self.c_dim = z_dim, w_dim, num_ws, 25
            self.weight = torch.nn.Parameter(torch.randn([w_dim, z_dim]))
            self.bias = torch.nn.Parameter(torch.randn([w_dim]) * 0.1)
            self.register_buffer("w_avg", torch.zeros([w_dim]))
        def forward(self, z, c, truncation_psi=1, truncation_cutoff=None, update_emas=False):
            misc.assert_shape(z, [None, self.z_dim])
            x = normalize(z) @ (self.weight / np.sqrt(self.z_dim)).t()
            x = bias_act.bias_act(x, self.bias, act="lrelu")
            x = x.unsqueeze(1).repeat([1, self.num_ws, 1])
            return self.w_avg.lerp(x, truncation_psi)

    @persistence.persistent_class
    class Synthesis(torch.nn.Module):
        def __init__(self, w_dim, res):
            super().__init__()
            self.w_dim, self.res, self.num_ws = w_dim, res, 2
            self.const = torch.nn.Parameter(torch.randn([8, res // 2, res // 2]))
            self.affine = torch.nn.Parameter(torch.randn([8 + 6, w_dim]) * 0.3)
            self.weight = torch.nn.Parameter(torch.randn([3, 8 + 6, 3, 3]))
            self.register_buffer("resample_filter", upfirdn2d.setup_filter([1, 3, 3, 1]))
            self.register_buffer("noise_const", torch.randn([res, res]))
        def forward(self, ws, c, noise_mode="random", force_fp32=False):
            misc.assert_shape(c, [ws.shape[0], 25])
            n = ws.shape[0]
            cam = c[:, :16].reshape(n, 4, 4)
            rays = cam[:, :3, 2].reshape(n, 3, 1, 1).repeat(1, 2, self.res // 2, self.res // 2)
            x = torch.cat([self.const.unsqueeze(0).repeat(n, 1, 1, 1), rays], dim=1)
            s = ws[:, 0] @ self.affine.t() + 1
            x = x * s.reshape(n, -1, 1, 1)
            x = conv2d_resample.conv2d_resample(x, self.weight, f=self.resample_filter, up=2, padding=1)
            noise = self.noise_const if noise_mode == "const" else torch.zeros_like(self.noise_const)
            x = fma.fma(x, misc.constant(0.1, device=x.device), noise)
            return bias_act.bias_act(x, None, act="tanh")

    @persistence.persistent_class
    class Generator(torch.nn.Module):
        def __init__(self, z_dim=16, w_dim=16, res=16):
            super().__init__()
            self.z_dim, self.c_dim, self.w_dim = z_dim, 25, w_dim
            self.img_resolution, self.img_channels = res, 3
            self.synthesis = Synthesis(w_dim, res)
            self.num_ws = self.synthesis.num_ws
            self.mapping = Mapping(z_dim, w_dim, self.num_ws)
        def forward(self, z, c, truncation_psi=1, truncation_cutoff=None, **kw):
            return self.synthesis(self.mapping(z, c, truncation_psi), c, **kw)
''')

WRITER = textwrap.dedent('''
    import pickle, sys, numpy as np, torch
    sys.path.insert(0, sys.argv[1])
    import foreign_net
    from raycond import camera
    torch.manual_seed(1)
    G = foreign_net.Generator().eval()
    z = torch.from_numpy(np.random.RandomState(5).randn(2, 16)).float()
    c = camera.camera_label([-20.0, 25.0], [0.0, 5.0])
    img = G(z, c, noise_mode="const")
    with open(sys.argv[2], "wb") as f:
        pickle.dump({"G_ema": G, "G": G, "D": None}, f)
    np.save(sys.argv[3], img.detach().numpy())
''')

READER = textwrap.dedent('''
    import sys, numpy as np, torch
    assert "foreign_net" not in sys.modules
    try:
        import foreign_net
        raise SystemExit("foreign_net should not be importable here")
    except ImportError:
        pass
    from raycond.loading import UntrustedPickleError, load_network_and_info
    from raycond import camera, generate
    try:   # a stand-in class of no known family: refused by default, loaded with trust
        load_network_and_info(sys.argv[1])
        raise SystemExit("safe loading should refuse a class it cannot rebuild")
    except UntrustedPickleError as e:
        assert "persistent class Generator" in e.names, e.names
    G, info = load_network_and_info(sys.argv[1], trust_pickle=True)
    assert info.camera and info.synthesis_takes_c and info.c_dim == 25, info
    z = torch.from_numpy(np.random.RandomState(5).randn(2, 16)).float()
    c = camera.camera_label([-20.0, 25.0], [0.0, 5.0])
    ws = generate.map_latents(G, z, c)
    img = generate.synthesize(G, ws, c, noise_mode="const")
    ref = np.load(sys.argv[2])
    err = float(np.abs(img.numpy() - ref).max())
    assert err < 1e-5, err
    assert G.init_kwargs == {} and type(G).__name__ == "Generator"
    print("OK", err)
''')


def _run(script, *args, cwd):
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, "-c", script, *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_foreign_style_pickle_loads_without_its_module(tmp_path):
    mod_dir = tmp_path / "mods"
    mod_dir.mkdir()
    (mod_dir / "foreign_net.py").write_text(FOREIGN_MODULE)
    pkl, ref = tmp_path / "net.pkl", tmp_path / "ref.npy"
    r = _run(WRITER, str(mod_dir), str(pkl), str(ref), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    (mod_dir / "foreign_net.py").unlink()            # the defining module is gone
    r = _run(READER, str(pkl), str(ref), cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.startswith("OK")


def test_pickle_format_matches_compat(tmp_path):
    """The reduced form is _reconstruct_persistent_obj(meta) with the documented meta keys."""
    import pickletools
    import torch
    from torch_utils import persistence

    mod_dir = tmp_path / "m"
    mod_dir.mkdir()
    (mod_dir / "foreign_net.py").write_text(FOREIGN_MODULE)
    sys.path.insert(0, str(mod_dir))
    try:
        import foreign_net
        G = foreign_net.Generator(z_dim=8, w_dim=8, res=8)
    finally:
        sys.path.remove(str(mod_dir))
    fn, (meta,), state = G.__reduce__()[:3]
    assert fn is persistence._reconstruct_persistent_obj and state is None
    assert set(meta) == {"type", "version", "module_src", "class_name", "state"}
    assert meta["type"] == "class" and meta["version"] == 6 and meta["class_name"] == "Generator"
    assert "class Synthesis" in meta["module_src"]
    assert G.init_kwargs == {"z_dim": 8, "w_dim": 8, "res": 8}
    data = pickle.dumps(G)
    ops = {op.name for op, _, _ in pickletools.genops(data)}
    assert "STACK_GLOBAL" in ops or "GLOBAL" in ops
    assert b"_reconstruct_persistent_obj" in data
    G2 = pickle.loads(data)
    for (n1, t1), (n2, t2) in zip(G.state_dict().items(), G2.state_dict().items()):
        assert n1 == n2 and torch.equal(t1, t2)
    assert persistence.is_persistent(G2)

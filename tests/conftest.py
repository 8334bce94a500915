"""Shared fixtures: the repository root on sys.path, one intra-op thread, tiny generators (a factory)
and a small network pickled to a temp file."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

# One intra-op thread per process: the networks here are tiny, and on a 2-core machine OpenMP
# threads of several processes (subprocess tests, two-rank training) stall each other badly
# (a gradgradcheck measured 0.27 s with one thread and 39 s with two under load).
os.environ.setdefault("OMP_NUM_THREADS", "1")
# Inversion's camera start trains a pose regressor per network (about a minute); tests, and the
# scripts and notebooks they start, get a throwaway one trained in a second (raycond.pose_regressor).
os.environ.setdefault("RAYCOND_POSE_QUICK", "1")
# Tests compare float32 numerics; on a CPU with native bfloat16 the networks' fp16 layers would run in
# bf16 (raycond.precision). tests/test_bf16.py turns it on where it tests it.
os.environ.setdefault("RAYCOND_CPU_BF16", "0")
import torch  # noqa: E402

torch.set_num_threads(1)


def run_script(script: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run a top-level script of the repository (e.g. 'gen_images.py') in a fresh interpreter."""
    return subprocess.run([sys.executable, os.path.join(ROOT, script), *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


from raycond.families import FAMILIES  # noqa: E402

TINY_CLASSES = {kind: FAMILIES[kind].generator for kind in ("raycond2", "stylegan2", "raycond3", "stylegan3")}


def tiny_generator_kwargs(kind: str = "raycond2", res: int = 32, **overrides) -> dict:
    """Constructor arguments (with class_name) of a generator small enough for CPU tests:
    ray-conditioned kinds take the 25-value camera, the StyleGAN ones no label."""
    kw = dict(class_name=TINY_CLASSES[kind], z_dim=32, c_dim=25 if kind.startswith("raycond") else 0, w_dim=32,
              img_resolution=res, img_channels=3, channel_base=512, channel_max=32,
              mapping_kwargs=dict(num_layers=2))
    if kind.endswith("3"):
        kw.update(num_layers=4, num_critical=1, margin_size=2)
    kw.update(overrides)
    return kw


def small_raycond_kwargs(res: int = 32) -> dict:
    """The session's small ray-conditioned generator (see tiny_generator_kwargs)."""
    return tiny_generator_kwargs("raycond2", res)


def make_tiny_generator(kind: str = "raycond2", res: int = 32, seed: int = 0, **overrides):
    """A tiny generator with weights drawn from `seed`, in eval mode without gradients."""
    import dnnlib
    torch.manual_seed(seed)
    G = dnnlib.util.construct_class_by_name(**tiny_generator_kwargs(kind, res, **overrides))
    return G.eval().requires_grad_(False)


@pytest.fixture(scope="session")
def tiny_generator():
    """Factory fixture: tiny_generator(kind='raycond2', res=32, seed=0, **constructor overrides)."""
    return make_tiny_generator


@pytest.fixture(scope="session")
def small_generator():
    return make_tiny_generator()


@pytest.fixture(scope="session")
def small_pickle(tmp_path_factory, small_generator):
    path = tmp_path_factory.mktemp("net") / "raycond-small.pkl"
    with open(path, "wb") as f:
        pickle.dump({"G_ema": small_generator, "training_set_kwargs": None,
                     "camera_stats": {"yaw_range_deg": [-30.0, 30.0], "pitch_range_deg": [-10.0, 10.0],
                                      "radius": 2.7, "lookat": [0.0, 0.0, 0.2], "focal": 4.2647,
                                      "fov_deg": 13.37, "yaw_mean_deg": 0.0, "pitch_mean_deg": 0.0,
                                      "num_labels": 10}}, f)
    return str(path)


def make_camera_zip(path, n: int = 8, res: int = 16, seed: int = 0) -> str:
    """A ZIP dataset of `n` random `res`² images with EG3D camera labels (for tiny training runs)."""
    import io
    import json
    import zipfile

    import numpy as np
    import PIL.Image

    from raycond.camera import camera_label
    rnd = np.random.RandomState(seed)
    c = camera_label(rnd.uniform(-30, 30, n), rnd.uniform(-10, 10, n)).numpy()
    entries = []
    with zipfile.ZipFile(path, "w") as z:
        for i in range(n):
            buf = io.BytesIO()
            PIL.Image.fromarray((rnd.rand(res, res, 3) * 255).astype(np.uint8)).save(buf, format="png")
            z.writestr(f"{i:05d}.png", buf.getvalue())
            entries.append([f"{i:05d}.png", c[i].tolist()])
        z.writestr("dataset.json", json.dumps({"labels": entries}))
    return str(path)


def fixed_camera_encoder(w_dim, yaw_bias, pitch_bias, width=8):
    """An inversion Encoder whose camera head ignores the image: yaw = 30·yaw_bias, pitch = 10·pitch_bias."""
    import torch
    from raycond.inversion import encoder as enc
    net = enc.Encoder(w_dim, (-30, 30), (-10, 10), width=width)
    with torch.no_grad():
        net.camera_head.weight.zero_()
        net.camera_head.bias.copy_(torch.tensor([yaw_bias, pitch_bias]))
    return net

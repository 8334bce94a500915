"""Shared fixtures: the repository root on sys.path, small networks pickled to temp files."""

from __future__ import annotations

import os
import pickle
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

# One intra-op thread per process: the networks here are tiny, and on a 2-core machine OpenMP
# threads of several processes (subprocess tests, two-rank training) stall each other badly
# (a gradgradcheck measured 0.27 s with one thread and 39 s with two under load).
os.environ.setdefault("OMP_NUM_THREADS", "1")
import torch  # noqa: E402

torch.set_num_threads(1)


def small_raycond_kwargs(res: int = 32) -> dict:
    """Constructor arguments of a tiny ray-conditioned generator (fast on the CPU)."""
    return dict(class_name="training.networks_raycond2.Generator", z_dim=32, c_dim=25, w_dim=32,
                img_resolution=res, img_channels=3, channel_base=512, channel_max=32,
                mapping_kwargs=dict(num_layers=2))


@pytest.fixture(scope="session")
def small_generator():
    import torch
    import dnnlib
    torch.manual_seed(0)
    G = dnnlib.util.construct_class_by_name(**small_raycond_kwargs())
    return G.eval().requires_grad_(False)


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

"""The frame pipeline of raycond.generate (what the visualizer renders, as a library function)."""

import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch

from raycond import generate as gen
from raycond import loading
from viz.renderer import RenderArgs, Renderer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def ray_net(small_pickle):
    return loading.load_network_and_info(small_pickle, device="cpu")


@pytest.fixture(scope="module")
def class_pickle(tmp_path_factory, tiny_generator):
    path = tmp_path_factory.mktemp("cls") / "cond.pkl"
    with open(path, "wb") as f:
        pickle.dump({"G_ema": tiny_generator("stylegan2", res=16, c_dim=4)}, f)
    return str(path)


def _ws(G, info, seed, spec):
    """ws of one integer seed, mapped directly (the expectation the frame pipeline is checked against)."""
    c = gen.frame_label(info, spec, "cpu")
    z = gen.seeds_to_z([seed], G.z_dim)
    return gen.map_latents(G, z, c, spec.trunc_psi, spec.trunc_cutoff or None)


def test_fractional_seed_blends_the_neighbouring_seeds_in_w(ray_net):
    G, info = ray_net
    spec = gen.FrameSpec(seed=3.25, trunc_psi=0.7, yaw_deg=10.0)
    expected = 0.75 * _ws(G, info, 3, spec) + 0.25 * _ws(G, info, 4, spec)
    torch.testing.assert_close(gen.frame_latents(G, info, spec, torch.device("cpu"))[0], expected)


def test_style_mixing_takes_the_chosen_layers_from_the_mix_seed(ray_net):
    G, info = ray_net
    spec = gen.FrameSpec(seed=7, mix_seed=11, mix_layers=(0, 2))
    ws, _ = gen.frame_latents(G, info, spec, torch.device("cpu"))
    own, mix = _ws(G, info, 7, spec), _ws(G, info, 11, spec)
    torch.testing.assert_close(ws[:, [0, 2]], mix[:, [0, 2]])
    torch.testing.assert_close(ws[:, 1], own[:, 1])


@pytest.mark.parametrize("fields", [
    dict(seed=3.25, yaw_deg=12.0, pitch_deg=-5.0),
    dict(seed=7, mix_seed=11, mix_layers=(0, 1, 2), trunc_psi=0.7, trunc_cutoff=4),
    dict(seed=2.5, noise_mode="random", noise_seed=5, fov_deg=20.0, radius=3.1, lookat=(0.0, 0.05, 0.0)),
], ids=["fractional-seed", "style-mixing", "random-noise-and-camera"])
def test_render_frame_gives_the_visualizer_image(small_pickle, ray_net, fields):
    G, info = ray_net
    shown = Renderer().render(RenderArgs(pkl=small_pickle, device="cpu", **fields))
    img = gen.render_frame(G, info, gen.FrameSpec(**fields))
    np.testing.assert_array_equal(gen.to_uint8(img)[0].numpy(), shown.image)


def test_render_frame_of_a_class_conditional_network_uses_the_one_hot_class(class_pickle):
    G, info = loading.load_network_and_info(class_pickle, device="cpu")
    spec = gen.FrameSpec(seed=4.75, class_idx=3, trunc_psi=0.5)
    shown = Renderer().render(RenderArgs(pkl=class_pickle, device="cpu", seed=4.75, class_idx=3, trunc_psi=0.5))
    np.testing.assert_array_equal(gen.to_uint8(gen.render_frame(G, info, spec))[0].numpy(), shown.image)
    torch.testing.assert_close(gen.frame_label(info, spec), torch.tensor([[0.0, 0.0, 0.0, 1.0]]))


def test_class_out_of_range_is_refused(class_pickle):
    _G, info = loading.load_network_and_info(class_pickle, device="cpu")
    with pytest.raises(ValueError, match=r"class 4 out of range 0\.\.3"):
        gen.frame_label(info, gen.FrameSpec(class_idx=4))


def test_random_noise_leaves_the_callers_random_stream_alone(ray_net):
    G, info = ray_net
    torch.manual_seed(123)
    gen.render_frame(G, info, gen.FrameSpec(noise_mode="random", noise_seed=9))
    after = torch.rand(3)
    torch.manual_seed(123)
    torch.testing.assert_close(after, torch.rand(3))


def test_headless_first_frame_is_rendered_once_at_the_snapshot_camera(small_pickle, monkeypatch):
    from viz.headless import render_first_frame
    frames, real = [], gen.synthesize_frame
    monkeypatch.setattr(gen, "synthesize_frame", lambda G, ws, c, spec: frames.append(spec) or real(G, ws, c, spec))
    res = render_first_frame(small_pickle, device="cpu")
    assert res.error is None and len(frames) == 1
    assert (frames[0].fov_deg, frames[0].radius) == (13.37, 2.7)      # small_pickle's camera_stats


def test_importing_the_renderer_leaves_the_environment_unchanged():
    code = ("import os; before = dict(os.environ); import viz.renderer, viz.async_renderer, viz.app_state; "
            "print(sorted(k for k in set(before) | set(os.environ) if before.get(k) != os.environ.get(k)))")
    env = dict(os.environ, WAYLAND_DISPLAY="wayland-0", XDG_SESSION_TYPE="wayland")   # setup would change 3 names
    for name in ("PYGLFW_LIBRARY", "PYGLFW_LIBRARY_VARIANT", "PYOPENGL_PLATFORM"):
        env.pop(name, None)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"

"""raycond.inversion: camera recovery through differentiable rays, copies, save/load, bad inputs, losses.

Most tests use the tiny generator of conftest (32², untrained) and a handful of steps; one checks
the whole pipeline on the bundled checkpoint (marked slow).
"""

from __future__ import annotations

import copy
import math
import os
import pickle

import numpy as np
import PIL.Image
import pytest
import torch

import dnnlib
from conftest import small_raycond_kwargs
from raycond import camera as cam
from raycond import feature_nets, inversion, loading, rays
from raycond import generate as rgen
from raycond.inversion.losses import make_loss
from raycond.inversion.pipeline import fixed_camera_label
from raycond.inversion.state import synthesize
from test_metrics import save_fake_detector  # noqa: E402 (tests/ is on sys.path)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUNDLED = os.path.join(ROOT, "checkpoints", "raycond2-synthheads-64.pkl")
QUICK = dict(num_steps=4, tune_steps=2, camera_start="grid", grid_yaws=3, grid_pitches=2, grid_keep=1,
             grid_refine_steps=2, verbose=False)


@pytest.fixture(autouse=True)
def offline_vgg(monkeypatch, tmp_path):
    """No test downloads NVIDIA's VGG16: point its URL at a missing local file (the offline case)."""
    monkeypatch.setenv(feature_nets.VGG16_ENV, "file://" + str(tmp_path / "no-vgg16.pkl"))


def render_own(G, info, yaw, pitch, ws=None):
    c = rgen.c_for_network(info, yaw, pitch)
    with torch.no_grad():
        if ws is None:
            ws = rgen.map_latents(G, torch.zeros([1, G.z_dim]), c)
        img = synthesize(G, ws, c, info.camera)
    return rgen.to_uint8(img)[0].numpy(), c


def tiny_net(**overrides):
    torch.manual_seed(1)
    kwargs = dict(small_raycond_kwargs(), **overrides)
    return dnnlib.util.construct_class_by_name(**kwargs).eval().requires_grad_(False)


# ----------------------------------------------------------------------------- camera path


def test_camera_label_is_differentiable_in_yaw_and_pitch():
    yaw = torch.tensor([20.0], requires_grad=True)
    pitch = torch.tensor([-5.0], requires_grad=True)
    c = cam.camera_label(yaw, pitch)
    c[0, 3].backward()                                   # x of the camera position
    expected = 2.7 * math.cos(math.radians(-5)) * math.cos(math.radians(20)) * math.pi / 180
    assert yaw.grad is not None and abs(float(yaw.grad) - expected) < 1e-5


def test_ray_embedding_gradient_matches_finite_difference():
    c0 = cam.camera_label(10.0, 3.0).double()
    c = c0.clone().requires_grad_(True)
    emb = rays.plucker_rays(c, 8)
    weights = torch.linspace(-1, 1, emb.numel(), dtype=torch.float64).reshape(emb.shape)
    (emb * weights).sum().backward()
    eps = 1e-6
    cp, cm = c0.clone(), c0.clone()
    cp[0, 3] += eps
    cm[0, 3] -= eps
    fd = ((rays.plucker_rays(cp, 8) - rays.plucker_rays(cm, 8)) * weights).sum() / (2 * eps)
    assert abs(float(c.grad[0, 3]) - float(fd)) < 1e-5 * max(1.0, abs(float(fd)))


def test_recovers_off_grid_camera_through_ray_gradients(small_generator):
    # The image is the network's own render at the mean latent, the latent is held fixed (lr=0):
    # only the camera can explain it. The grid's cells are 15 degrees apart, so without gradients
    # through the rays the estimate would stay at least 7 degrees away. ToRGB is scaled down so
    # that the untrained network's image stays inside [-1, 1] (clipped pixels would bias the fit).
    G = copy.deepcopy(small_generator)
    with torch.no_grad():
        for name, p in G.named_parameters():
            if "torgb" in name:
                p.mul_(0.4)
    info = loading.network_info(G, {"camera_stats": {"yaw_range_deg": [-30, 30], "pitch_range_deg": [-10, 10],
                                                     "radius": 2.7, "lookat": [0, 0, 0.2], "fov_deg": 13.37}})
    z = torch.randn([1000, G.z_dim], generator=torch.Generator().manual_seed(0))
    c_true = rgen.c_for_network(info, 22.0, -4.0)
    with torch.no_grad():
        w_avg = G.mapping(z, rgen.mapping_c(G, c_true, 1000, "cpu"))[:, 0].mean(0)
        img = rgen.synthesize(G, w_avg.reshape(1, 1, -1).repeat(1, G.num_ws, 1), c_true)
    target = rgen.to_uint8(img)[0].numpy()
    res = inversion.invert(G, target, info=info, num_steps=60, tune_steps=0, lr=0.0, noise_factor=0.0,
                           camera_lr=1.0, camera_start="grid", grid_yaws=5, grid_pitches=3, grid_keep=1,
                           grid_refine_steps=20,
                           loss="pixel", verbose=False)
    assert abs(res.meta["yaw_deg"] - 22.0) < 2.0
    assert abs(res.meta["pitch_deg"] + 4.0) < 2.0


def test_regressor_start_reports_camera_progress_and_caches(small_generator, monkeypatch, tmp_path):
    monkeypatch.setenv("DNNLIB_CACHE_DIR", str(tmp_path))
    target, _ = render_own(small_generator, loading.network_info(small_generator), 10, 0)
    stages = []
    res = inversion.invert(small_generator, target, progress=lambda *a: stages.append(a[2]),
                           **dict(QUICK, camera_start="regressor", pose_samples=32, pose_steps=25))
    assert "camera" in stages and res.meta["camera_estimated"]
    assert len(os.listdir(tmp_path / "raycond-pose")) == 1


def test_unknown_camera_start_is_refused(small_generator):
    with pytest.raises(ValueError, match="camera_start must be"):
        inversion.invert(small_generator, np.zeros((32, 32, 3), np.uint8), **dict(QUICK, camera_start="guess"))


def test_tuning_from_a_resolution_leaves_coarser_blocks_unchanged(small_generator):
    target, _ = render_own(small_generator, loading.network_info(small_generator), 10, 0)
    res = inversion.invert(small_generator, target, **dict(QUICK, tune_from_res=16))
    before, after = small_generator.state_dict(), res.G.state_dict()
    changed = {k.split(".")[1] for k in after if k.startswith("synthesis.") and not torch.equal(after[k], before[k])}
    assert changed and all(int(b[1:]) >= 16 for b in changed)


def test_tuning_without_locality_renders_no_references(small_generator, monkeypatch):
    from raycond.inversion import tuning

    def refuse(*_a, **_k):
        raise AssertionError("locality references rendered with locality_weight 0")
    monkeypatch.setattr(tuning, "locality_references", refuse)
    target, _ = render_own(small_generator, loading.network_info(small_generator), 10, 0)
    res = inversion.invert(small_generator, target, **dict(QUICK, locality_weight=0.0))
    assert any(not torch.equal(v, small_generator.state_dict()[k]) for k, v in res.G.state_dict().items())


def test_tuning_renders_a_locality_reference_every_locality_every_steps(small_generator, monkeypatch):
    from raycond.inversion import state

    last, steps = [], []
    render, tick = state.Run.render, state.Run.tick

    def counting_render(self, G, ws, c):
        last[:] = [ws.shape[0]]
        return render(self, G, ws, c)

    def counting_tick(self, stage, loss, img):
        if stage == "tune":
            steps.append(last[0])        # the batch of the step's render: the pivot, and a reference or not
        return tick(self, stage, loss, img)
    monkeypatch.setattr(state.Run, "render", counting_render)
    monkeypatch.setattr(state.Run, "tick", counting_tick)
    target, _ = render_own(small_generator, loading.network_info(small_generator), 10, 0)
    inversion.invert(small_generator, target, **dict(QUICK, tune_steps=6, locality_every=3, locality_bank=2))
    assert steps == [2, 1, 1, 2, 1, 1]
    with pytest.raises(ValueError, match="locality_every"):
        inversion.InversionConfig(locality_every=0)


@pytest.mark.slow
def test_bundled_checkpoint_inversion_recovers_camera_and_reconstructs(monkeypatch):
    monkeypatch.delenv("RAYCOND_POSE_QUICK", raising=False)     # the real regressor (cached after one run)
    G, info = loading.load_network_and_info(BUNDLED)
    ws = rgen.map_latents(G, rgen.seeds_to_z([3], G.z_dim), truncation_psi=0.6)
    target, _ = render_own(G, info, 20.0, -5.0, ws)
    res = inversion.invert(BUNDLED, target, num_steps=80, tune_steps=20, loss="pixel", verbose=False)
    assert abs(res.meta["yaw_deg"] - 20.0) < 4.0 and abs(res.meta["pitch_deg"] + 5.0) < 4.0
    recon = rgen.to_uint8(res.render())[0].numpy().astype(float)
    psnr = 10 * math.log10(255 ** 2 / np.mean((recon - target) ** 2))
    assert psnr > 24.0


# ----------------------------------------------------------------------------- results


def test_result_generator_is_a_tuned_copy(small_generator):
    before = {k: v.clone() for k, v in small_generator.state_dict().items()}
    target, _ = render_own(small_generator, loading.network_info(small_generator), 10, 0)
    res = inversion.invert(small_generator, target, **QUICK)
    assert res.G is not small_generator
    for k, v in small_generator.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert any(not torch.equal(v, before[k]) for k, v in res.G.state_dict().items())


def test_result_shapes_and_render_range(small_generator):
    target, _ = render_own(small_generator, loading.network_info(small_generator), 10, 0)
    res = inversion.invert(small_generator, target, **QUICK)
    assert res.camera.shape == (1, 25) and res.camera.dtype == torch.float32
    assert res.ws.shape == (1, small_generator.num_ws, small_generator.w_dim)
    imgs = res.render(res.camera_at([-20, 0, 20], [0, 0, 0]))
    assert imgs.shape == (3, 3, 32, 32) and imgs.dtype == torch.float32
    assert float(imgs.min()) >= -1 and float(imgs.max()) <= 1
    assert res.render(res.camera[0]).shape == (1, 3, 32, 32)


def test_save_load_round_trip_renders_identically(tmp_path, small_pickle):
    G = loading.load_network(small_pickle)
    target, c = render_own(G, loading.network_info(G), -15, 5)
    res = inversion.invert(small_pickle, target, **QUICK)
    path = tmp_path / "inversion.pt"
    res.save(path)
    other = c.clone()
    other[0, 3] += 0.3
    for loaded in (inversion.load(path), inversion.load(path, G=G)):     # stored network path, given G
        assert torch.equal(loaded.render(other), res.render(other))
        assert torch.equal(loaded.camera, res.camera)


def test_inversion_file_holds_no_code(tmp_path, small_generator):
    target, _ = render_own(small_generator, loading.network_info(small_generator), 0, 0)
    res = inversion.invert(small_generator, target, **QUICK)
    res.save(tmp_path / "inv.pt")
    payload = torch.load(tmp_path / "inv.pt", weights_only=True)
    assert payload["format"] == inversion.FORMAT and payload["ws"].shape == res.ws.shape


def test_inversion_file_that_inflates_is_refused_without_reading_it(tmp_path):
    """A zip entry compressed 1000:1 would make torch.load allocate its inflated size; the restricted
    reader refuses any compressed entry in one line naming the file."""
    import zipfile
    path = tmp_path / "bomb.pt"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("bomb/data.pkl", pickle.dumps({"format": inversion.FORMAT}, protocol=2))
        zf.writestr("bomb/data/0", bytes(64 << 20))
    assert os.path.getsize(path) < 1 << 20
    with pytest.raises(inversion.InversionFileError) as info:
        inversion.load(path)
    msg = str(info.value)
    assert str(path) in msg and "larger than its file" in msg and "weights_only" not in msg and "\n" not in msg


def test_load_refuses_a_different_network(tmp_path, small_generator):
    target, _ = render_own(small_generator, loading.network_info(small_generator), 0, 0)
    res = inversion.invert(small_generator, target, **QUICK)
    res.save(tmp_path / "inv.pt")
    with pytest.raises(ValueError, match="different network"):
        inversion.load(tmp_path / "inv.pt", G=tiny_net())


def test_progress_gets_previews_and_false_cancels(small_generator):
    target, _ = render_own(small_generator, loading.network_info(small_generator), 0, 0)
    seen = []

    def progress(step, total, stage, loss, preview):
        seen.append((step, total, stage, preview.shape, float(preview.min()), float(preview.max())))
        return stage != "pivot"

    with pytest.raises(inversion.Cancelled, match="cancelled during pivot"):
        inversion.invert(small_generator, target, progress=progress, **QUICK)
    assert [s[2] for s in seen][:1] == ["camera"] and seen[-1][2] == "pivot"
    assert all(s[3] == (1, 3, 32, 32) and s[4] >= -1 and s[5] <= 1 for s in seen)
    assert seen[-1][0] < seen[-1][1]


# ----------------------------------------------------------------------------- other networks


def test_network_without_camera_inverts_latent_only(capsys):
    G = tiny_net(c_dim=0, embedding="none")
    target, _ = render_own(G, loading.network_info(G), 0, 0)
    res = inversion.invert(G, target, num_steps=3, tune_steps=2, verbose=True)
    assert "the camera is fixed" in capsys.readouterr().out
    assert res.camera.shape == (1, 0) and res.render().shape == (1, 3, 32, 32)


def test_mapping_camera_network_keeps_camera_through_mapping():
    G = tiny_net(embedding="none", camera_in_mapping=True)
    target, _ = render_own(G, loading.network_info(G), 10, 0)
    res = inversion.invert(G, target, **QUICK)
    assert res.z is not None and res.z.shape == (1, G.z_dim)
    a, b = res.render(res.camera_at([-30, 30], [0, 0]))
    assert float((a - b).abs().mean()) > 1e-3


# ----------------------------------------------------------------------------- bad inputs


def test_missing_target_file(small_generator, tmp_path):
    with pytest.raises(inversion.TargetImageError, match="target image not found"):
        inversion.invert(small_generator, str(tmp_path / "nope.png"), **QUICK)


def test_target_that_is_not_an_image(small_generator, tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("not a picture")
    with pytest.raises(inversion.TargetImageError, match="is not an image"):
        inversion.invert(small_generator, str(bad), **QUICK)


def test_grey_target_is_repeated_to_rgb_with_a_message(small_generator, capsys):
    grey = np.full((32, 32), 128, np.uint8)
    res = inversion.invert(small_generator, PIL.Image.fromarray(grey), **dict(QUICK, verbose=True))
    assert "grey image repeated into 3 channels" in capsys.readouterr().out
    assert res.target.shape == (1, 3, 32, 32)


def test_transparent_rgba_target_is_refused(small_generator):
    rgba = np.zeros((32, 32, 4), np.uint8)
    with pytest.raises(inversion.TargetImageError, match="transparent pixels"):
        inversion.invert(small_generator, rgba, **QUICK)


def test_non_square_target_is_centre_cropped_and_resized(small_generator, capsys):
    img = np.zeros((40, 80, 3), np.uint8)
    img[:, 20:60] = 200                          # the centre square is bright, the sides dark
    res = inversion.invert(small_generator, img, **dict(QUICK, verbose=True))
    out = capsys.readouterr().out
    assert "centre-cropped 80x40 to 40x40" in out and "resized 40x40 to 32x32" in out
    assert int(res.target.min()) >= 190


def test_file_without_generator(tmp_path):
    path = tmp_path / "d-only.pkl"
    with open(path, "wb") as f:
        pickle.dump({"training_set_kwargs": {"resolution": 32}, "kimg": 3.0}, f)
    with pytest.raises(loading.NetworkLoadError, match="has no generator"):
        inversion.invert(str(path), np.zeros((32, 32, 3), np.uint8), **QUICK)


def test_nan_camera(small_generator):
    c = torch.full([25], float("nan"))
    with pytest.raises(ValueError, match="camera label contains NaN"):
        inversion.invert(small_generator, np.zeros((32, 32, 3), np.uint8), camera=c, **QUICK)


# ----------------------------------------------------------------------------- losses


def test_auto_loss_falls_back_to_pixels_offline_in_one_line():
    lines = []
    loss = make_loss("auto", torch.zeros([1, 3, 16, 16]), "cpu", log=lines.append)
    assert loss.kind == "pixel" and len(lines) == 1 and "VGG16 file unavailable" in lines[0]


def test_discriminator_features_only_when_asked_for():
    """Offline, 'auto' prefers pixels even when the snapshot kept D (measured better on the bundled
    network); 'd' uses D's features."""
    D = dnnlib.util.construct_class_by_name(class_name="training.networks_raycond2.Discriminator", c_dim=25,
                                            img_resolution=16, img_channels=3, channel_base=256, channel_max=16)
    D = D.eval().requires_grad_(False)
    target = torch.zeros([1, 3, 16, 16])
    lines = []
    assert make_loss("auto", target, "cpu", D=D, log=lines.append).kind == "pixel"
    assert len(lines) == 1 and "pixel" in lines[0]
    with pytest.raises(ValueError, match="needs a discriminator"):
        make_loss("d", target, "cpu", log=lambda *_: None)
    lines = []
    loss = make_loss("d", target, "cpu", D=D, log=lines.append)
    c = cam.camera_label(0, 0)
    assert loss.kind == "d" and "discriminator" in lines[0]
    assert float(loss(target, c)) == pytest.approx(0.0, abs=1e-6)
    assert float(loss(target + 0.5, c)) > 0


def test_lpips_loss_uses_the_vgg16_file_with_lpips_features(tmp_path, monkeypatch):
    # A stand-in with the detector's interface: "LPIPS" features are the pixels times 0.01/255.
    monkeypatch.setenv(feature_nets.VGG16_ENV, save_fake_detector(tmp_path / "vgg.pt"))
    lines = []
    target = torch.zeros([1, 3, 16, 16])
    loss = make_loss("auto", target, "cpu", pixel_weight=0.0, log=lines.append)
    assert loss.kind == "lpips" and "LPIPS" in lines[0]
    # Upsampled to 128² by the loss: 3*128*128 features, each (0.5*127.5 * 0.01/255)² apart.
    expected = 3 * 128 * 128 * (0.5 * 127.5 * 0.01 / 255) ** 2
    assert float(loss(target + 0.5)) == pytest.approx(expected, rel=1e-4)


def test_lpips_loss_refuses_when_the_file_is_missing():
    with pytest.raises(ValueError, match="needs NVIDIA's VGG16 file"):
        make_loss("lpips", torch.zeros([1, 3, 16, 16]), "cpu", log=lambda *_: None)


def test_read_only_camera_array_is_accepted_without_warning(small_generator, recwarn):
    c = rgen.c_for_network(loading.network_info(small_generator), 10.0, 0.0)[0].numpy().copy()
    c.setflags(write=False)
    assert fixed_camera_label(c, loading.network_info(small_generator)).shape == (1, 25)
    assert not [w for w in recwarn if "not writable" in str(w.message)]


# ----------------------------------------------------------------------------- configuration, threads


def test_config_checks_fields_when_made():
    with pytest.raises(TypeError, match="unknown inversion option"):
        inversion.InversionConfig().replace(num_step=3)
    with pytest.raises(TypeError, match="num_steps must be a int"):
        inversion.InversionConfig(num_steps=2.5)
    with pytest.raises(ValueError, match="step counts must be non-negative"):
        inversion.InversionConfig(tune_steps=-1)
    with pytest.raises(ValueError, match="unknown loss 'vgg'"):
        inversion.InversionConfig(loss="vgg")
    assert inversion.InversionConfig.parse_assignment("locality_weight=2") == ("locality_weight", 2.0)
    assert inversion.InversionConfig.parse_assignment("w_plus=true") == ("w_plus", True)


def test_invert_takes_a_config_and_keyword_overrides(small_generator):
    target, _ = render_own(small_generator, loading.network_info(small_generator), 10, 0)
    config = inversion.InversionConfig(**{k: v for k, v in QUICK.items() if k != "verbose"})
    res = inversion.invert(small_generator, target, config=config, tune_steps=0, num_steps=None, verbose=False)
    assert (res.meta["num_steps"], res.meta["tune_steps"], res.meta["camera_start"]) == (4, 0, "grid")


def test_plain_call_applies_the_thread_policy_unless_one_is_in_force(small_generator, monkeypatch):
    from raycond import threads
    applied, in_force = [], [False]
    monkeypatch.setattr(threads, "apply", lambda *a, **k: (applied.append(a), in_force.__setitem__(0, True)))
    monkeypatch.setattr(threads, "applied", lambda: in_force[0])
    monkeypatch.setattr(threads, "adapt", lambda: None)
    target = np.zeros((32, 32, 3), np.uint8)
    for _ in range(2):      # the first plain call starts the policy, the second finds it in force
        inversion.invert(small_generator, target, **dict(QUICK, num_steps=1, tune_steps=0))
        assert len(applied) == 1


def test_invert_runs_the_callers_step_hook_instead_of_the_thread_policy(small_generator, monkeypatch):
    from raycond import threads
    monkeypatch.setattr(threads, "apply", lambda *a, **k: pytest.fail("a caller's hook replaces the policy"))
    steps, reports = [], []
    inversion.invert(small_generator, np.zeros((32, 32, 3), np.uint8), on_step=lambda: steps.append(1),
                     progress=lambda *a: reports.append(a), **dict(QUICK, num_steps=2, tune_steps=0))
    assert len(reports) >= 2 and len(steps) == 1 + len(reports)     # once at the start, then before each report


def test_estimated_cameras_are_clamped_past_the_percentile_range_of_the_training_poses():
    """camera_stats holds the 1st-99th percentile of the training poses; the data reach further (the
    bundled network's ±47° against ±60°), so the clamp widens the range by 30 % of its half-width
    (at least 5°) instead of cutting heads at 52° yaw."""
    from types import SimpleNamespace

    from raycond.inversion.state import Run
    run = SimpleNamespace(yaw_range=(-47.0, 47.0), pitch_range=(-2.0, 2.0))
    assert Run.clamp_camera(run, 59.2, 0.0) == (59.2, 0.0)              # inside: unchanged
    assert Run.clamp_camera(run, 75.0, 9.0) == pytest.approx((61.1, 7.0))  # 47 + 14.1; pitch: the 5° floor
    assert Run.clamp_camera(run, -75.0, -9.0) == pytest.approx((-61.1, -7.0))

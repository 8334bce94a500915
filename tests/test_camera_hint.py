"""The camera start from the face landmarks: head_pose on a mesh of known pose, the pose read in the
crop's frame, `invert(camera_hint=...)` starting there only without a camera reader, and
projector.py passing a hint only for 'ffhq' networks."""

from __future__ import annotations

import shutil

import numpy as np
import PIL.Image
import pytest
from click.testing import CliRunner

import projector
from conftest import fixed_camera_encoder
from raycond import align, feature_nets, inversion, loading
from raycond.camera import camera_label
from raycond.inversion import encoder as enc


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    """Offline VGG16, and an empty cache so no encoder is trained or found elsewhere."""
    monkeypatch.setenv(feature_nets.VGG16_ENV, "file://" + str(tmp_path / "no-vgg16.pkl"))
    monkeypatch.setenv("DNNLIB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(loading, "DEFAULT_CHECKPOINT", str(tmp_path / "no-bundled.pkl"))


def rotation(yaw_deg, pitch_deg, roll_deg=0.0):
    """Head → camera-frame rotation (x right, y down, z forward) of a head seen by a camera at
    (yaw, pitch) in raycond.camera's convention, then turned in the image plane by roll."""
    y, p, r = np.radians([yaw_deg, pitch_deg, roll_deg])
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rx = np.array([[1, 0, 0], [0, np.cos(p), np.sin(p)], [0, -np.sin(p), np.cos(p)]])
    rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
    return rz @ ry @ rx


def mesh(yaw_deg, pitch_deg, roll_deg=0.0, scale=150.0, centre=(230.0, 260.0), noise=0.0, seed=0):
    """(478, 3) landmarks: the canonical face turned to a known pose, scaled and moved in the photo."""
    lm = np.zeros((align.NUM_LANDMARKS, 3))
    pts = scale * (rotation(yaw_deg, pitch_deg, roll_deg) @ align.CANONICAL_FACE.T).T
    pts += np.random.default_rng(seed).normal(0, noise, pts.shape)
    lm[list(align.POSE_POINTS)] = pts + [centre[0], centre[1], 0.0]
    return lm


@pytest.mark.parametrize("yaw, pitch", [(0.0, 0.0), (25.0, 0.0), (-30.0, 8.0), (12.0, -10.0)])
def test_head_pose_recovers_a_rotated_canonical_mesh(yaw, pitch):
    assert align.head_pose(mesh(yaw, pitch)) == pytest.approx((yaw, pitch), abs=1e-6)
    # Scale, position and a pixel of landmark noise barely matter.
    assert align.head_pose(mesh(yaw, pitch, scale=60.0, centre=(10.0, 900.0), noise=1.0)) == \
        pytest.approx((yaw, pitch), abs=1.5)


def test_camera_hint_reads_the_pose_in_the_crop_frame():
    lm = mesh(30.0, 0.0, roll_deg=20.0)
    assert align.head_pose(lm)[1] > 8.0                       # the photo's roll leaks into pitch
    r = np.radians(-20.0)                                     # the crop levels the eyes: rotate by -roll
    m = np.eye(3)
    m[:2, :2] = 0.3 * np.array([[np.cos(r), -np.sin(r)], [np.sin(r), np.cos(r)]])
    m[:2, 2] = (-12.0, 40.0)
    al = align.Alignment("ffhq", m, 64, 500, 600, lm)
    assert align.camera_hint(al, "ffhq") == pytest.approx((30.0, 0.0), abs=1e-6)
    assert align.camera_hint(al, "synth") is None              # not for synthetic-head networks (measured worse)
    assert align.camera_hint(align.Alignment("center", np.eye(3), 64, 500, 600, None), "ffhq") is None


# ----------------------------------------------------------------------------- invert(camera_hint=...)

def network_with_encoder(small_pickle, tmp_path, reader: bool) -> str:
    """A copy of the tiny network with an encoder file beside it (camera yaw 0, pitch -3; with
    `reader`, a camera reader that says yaw 0, pitch 2.5)."""
    G = loading.load_network(small_pickle)
    net = fixed_camera_encoder(G.w_dim, 0.5, -0.3)
    if reader:
        net.camera_reader = fixed_camera_encoder(G.w_dim, 0.0, 0.25)
    copy = tmp_path / "net.pkl"
    shutil.copy(small_pickle, copy)
    enc.save(net, enc.shipped_path(str(copy)), inversion.fingerprint(G), 1, 1)
    return str(copy)


PHOTO = np.full((32, 32, 3), 90, np.uint8)


def test_camera_hint_is_the_start_without_a_camera_reader(small_pickle, tmp_path):
    net = network_with_encoder(small_pickle, tmp_path, reader=False)
    res = inversion.invert(net, PHOTO, num_steps=0, tune_steps=0, verbose=False, camera_hint=(12.0, -4.0))
    m = res.meta
    assert (m["start_yaw_deg"], m["start_pitch_deg"]) == pytest.approx((12.0, -4.0))
    assert (m["yaw_deg"], m["pitch_deg"]) == pytest.approx((12.0, -4.0))
    assert m["camera_start"] == "encoder+landmarks" and m["camera_hint"] == [12.0, -4.0] and m["camera_refined"]
    plain = inversion.invert(net, PHOTO, num_steps=0, tune_steps=0, verbose=False)
    assert (plain.meta["yaw_deg"], plain.meta["pitch_deg"]) == pytest.approx((0.0, -3.0), abs=0.01)
    assert plain.meta["camera_start"] == "encoder" and plain.meta["camera_hint"] is None
    given = inversion.invert(net, PHOTO, camera=camera_label(20.0, 5.0)[0], num_steps=0, tune_steps=0, verbose=False,
                             camera_hint=(12.0, -4.0))
    assert given.meta["camera_start"] == "encoder" and not given.meta["camera_estimated"]   # a given camera wins
    assert (given.meta["yaw_deg"], given.meta["pitch_deg"]) == pytest.approx((20.0, 5.0), abs=1e-3)


def test_camera_hint_is_ignored_when_a_camera_reader_read_the_camera(small_pickle, tmp_path):
    net = network_with_encoder(small_pickle, tmp_path, reader=True)
    res = inversion.invert(net, PHOTO, num_steps=0, tune_steps=0, verbose=False, camera_hint=(12.0, -4.0))
    assert (res.meta["yaw_deg"], res.meta["pitch_deg"]) == pytest.approx((0.0, 2.5), abs=0.01)
    assert res.meta["camera_start"] == "encoder" and res.meta["camera_hint"] == [12.0, -4.0]


@pytest.mark.parametrize("hint", [(1.0,), "up", "12", (float("nan"), 0.0)])
def test_camera_hint_must_be_a_finite_pair(small_pickle, hint):
    with pytest.raises(ValueError, match="camera_hint must be"):
        inversion.invert(small_pickle, PHOTO, num_steps=0, tune_steps=0, verbose=False, camera_hint=hint)


# ----------------------------------------------------------------------------- projector.py

class Stop(Exception):
    pass


@pytest.mark.parametrize("convention, expected", [("ffhq", (20.0, 5.0)), ("synth", None)])
def test_projector_passes_a_landmark_camera_only_for_ffhq(small_pickle, tmp_path, monkeypatch, convention, expected):
    photo = tmp_path / "photo.png"
    PIL.Image.fromarray(np.zeros((40, 48, 3), np.uint8)).save(photo)
    m = np.array([[32 / 48, 0, 0], [0, 32 / 48, 2], [0, 0, 1]])

    def fake_align(image, conv, size, detect=True):
        al = align.Alignment(conv, m, size, image.shape[1], image.shape[0], mesh(20.0, 5.0, scale=20.0,
                                                                                   centre=(24.0, 20.0)))
        return np.zeros((size, size, 3), np.uint8), al

    seen = {}

    def fake_invert(G, target, **kw):
        seen.update(kw)
        raise Stop("stopped before the inversion")

    monkeypatch.setattr(align, "align_photo", fake_align)
    monkeypatch.setattr(inversion, "invert", fake_invert)
    r = CliRunner().invoke(projector.main, [f"--network={small_pickle}", f"--target={photo}", f"--outdir={tmp_path / 'o'}",
                                            "--align", f"--align-convention={convention}", "--device=cpu"])
    assert "camera_hint" in seen, r.output                    # the inversion was called (and stopped there)
    if expected is None:
        assert seen["camera_hint"] is None and "face landmarks" not in r.output
    else:
        assert seen["camera_hint"] == pytest.approx(expected, abs=1e-6)
        assert "camera start from the face landmarks: yaw +20.0 deg, pitch +5.0 deg" in r.output


@pytest.mark.parametrize("convention, expected", [("ffhq", (20.0, 5.0)), ("synth", None)])
def test_photo_panel_passes_a_landmark_camera_only_for_ffhq(tmp_path, monkeypatch, convention, expected):
    from types import SimpleNamespace
    from viz.photo import aligned_invert
    photo = tmp_path / "photo.png"
    PIL.Image.fromarray(np.zeros((40, 48, 3), np.uint8)).save(photo)

    def fake_align(image, conv, size, detect=True):
        al = align.Alignment(conv, np.eye(3), size, image.shape[1], image.shape[0], mesh(20.0, 5.0, scale=20.0))
        return np.zeros((size, size, 3), np.uint8), al

    seen, logged = {}, []

    def fake_invert(G, target, **kw):
        seen.update(kw)
        raise Stop("stopped before the inversion")

    monkeypatch.setattr(align, "align_photo", fake_align)
    monkeypatch.setattr(align, "convention_for_network", lambda *a, **k: convention)
    info = SimpleNamespace(camera=True, img_resolution=32)
    with pytest.raises(Stop):
        aligned_invert(info, invert=fake_invert)("net.pkl", str(photo), camera=None, log=logged.append)
    if expected is None:
        assert "camera_hint" not in seen and not logged
    else:
        assert seen["camera_hint"] == pytest.approx(expected, abs=1e-6)
        assert logged == ["camera start from the face landmarks: yaw +20.0 deg, pitch +5.0 deg"]

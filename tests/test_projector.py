"""projector.py writes every file it promises; gen_images/gen_video render its inversion.pt."""

from __future__ import annotations

import json
import os

import numpy as np
import PIL.Image
import pytest
import torch
from click.testing import CliRunner

import gen_images
import gen_video
import projector
from raycond import feature_nets, inversion


@pytest.fixture(autouse=True)
def offline_vgg(monkeypatch, tmp_path):
    monkeypatch.setenv(feature_nets.VGG16_ENV, "file://" + str(tmp_path / "no-vgg16.pkl"))


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    """A 48x40 photo (not square, not the network's size): exercises crop and resize too."""
    rng = np.random.default_rng(0)
    img = (rng.uniform(0, 255, (40, 48, 3))).astype(np.uint8)
    path = tmp_path_factory.mktemp("photo") / "photo.png"
    PIL.Image.fromarray(img).save(path)
    return str(path)


@pytest.fixture(scope="module")
def projected(tmp_path_factory, small_pickle, photo):
    out = tmp_path_factory.mktemp("proj")
    r = CliRunner().invoke(projector.main, [f"--network={small_pickle}", f"--target={photo}", f"--outdir={out}",
                                            "--num-steps=3", "--tune-steps=2", "--views=-20,20",
                                            "--pitch-views=-5,5", "--save-video=orbit.gif", "--device=cpu"])
    assert r.exit_code == 0, r.output
    return out, r.output


def test_projector_writes_every_listed_file(projected):
    out, _ = projected
    assert sorted(os.listdir(out)) == ["inversion.pt", "orbit.gif", "proj.png", "projected.npz", "target.png",
                                       "views.png"]
    assert np.asarray(PIL.Image.open(out / "target.png")).shape == (32, 32, 3)
    assert np.asarray(PIL.Image.open(out / "proj.png")).shape == (32, 32, 3)
    # 2 pitches x (target | reconstruction | 2 yaws), 2-pixel gaps.
    assert np.asarray(PIL.Image.open(out / "views.png")).shape == (2 * 32 + 2, 4 * 32 + 3 * 2, 3)
    npz = np.load(out / "projected.npz")
    assert npz["ws"].shape[0] == 1 and npz["c"].shape == (1, 25)
    assert PIL.Image.open(out / "orbit.gif").n_frames == 60


def test_projector_reports_stages_camera_and_total_time(projected):
    _, output = projected
    for line in ("stage camera:", "stage pivot:", "stage tune:", "camera (estimated): yaw", "inversion loss:",
                 "target: centre-cropped 48x40 to 40x40"):
        assert line in output
    assert "Wrote target.png, proj.png, projected.npz, inversion.pt, views.png, orbit.gif" in output


def test_projector_reconstruction_matches_loaded_inversion(projected):
    out, _ = projected
    res = inversion.load(out / "inversion.pt")
    recon = np.asarray(PIL.Image.open(out / "proj.png"))
    np.testing.assert_array_equal((res.render()[0].permute(1, 2, 0) * 127.5 + 128).clamp(0, 255).to(torch.uint8)
                                  .numpy(), recon)


def test_projector_uses_a_given_camera(tmp_path, small_pickle, photo):
    cam_file = tmp_path / "cam.json"
    cam_file.write_text(json.dumps({"yaw": 12.5, "pitch": -3}))
    r = CliRunner().invoke(projector.main, [f"--network={small_pickle}", f"--target={photo}", f"--outdir={tmp_path}",
                                            f"--camera-json={cam_file}", "--num-steps=2", "--tune-steps=0",
                                            "--device=cpu"])
    assert r.exit_code == 0, r.output
    assert "camera (given): yaw +12.5 deg, pitch -3.0 deg" in r.output


def test_projector_missing_target_is_one_line(tmp_path, small_pickle):
    r = CliRunner().invoke(projector.main, [f"--network={small_pickle}", f"--target={tmp_path / 'x.png'}",
                                            f"--outdir={tmp_path}", "--device=cpu"])
    assert r.exit_code != 0 and "target image not found" in r.output and "Traceback" not in r.output


def test_gen_images_renders_projected_views(tmp_path, projected):
    out, _ = projected
    r = CliRunner().invoke(gen_images.main, [f"--projected={out / 'inversion.pt'}", "--yaw=-20,20", "--pitch=0",
                                             f"--outdir={tmp_path}", "--device=cpu", "--grid"])
    assert r.exit_code == 0, r.output
    assert sorted(os.listdir(tmp_path)) == ["grid.png", "proj-yaw20-pitch0.png", "proj-yawm20-pitch0.png"]
    a = np.asarray(PIL.Image.open(tmp_path / "proj-yawm20-pitch0.png")).astype(int)
    b = np.asarray(PIL.Image.open(tmp_path / "proj-yaw20-pitch0.png")).astype(int)
    assert np.abs(a - b).mean() > 0.5


def test_gen_video_orbits_projected_face(tmp_path, projected):
    out, _ = projected
    r = CliRunner().invoke(gen_video.main, [f"--projected={out / 'inversion.pt'}", "--w-frames=6",
                                            f"--output={tmp_path / 'o.gif'}", "--device=cpu"])
    assert r.exit_code == 0, r.output
    gif = PIL.Image.open(tmp_path / "o.gif")
    assert gif.n_frames == 6 and gif.size == (32, 32)

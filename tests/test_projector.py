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
    for line in ("stage camera:", "stage pivot:", "stage tune:", "camera (estimated, refined by the pivot): yaw",
                 "inversion loss:",
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
    assert r.exit_code != 0 and "Traceback" not in r.output
    assert any(line.startswith("Error: target image not found") for line in r.output.splitlines()), r.output
    assert "step/s" not in r.output and "0%|" not in r.output                 # no stray progress bar


def test_projector_option_sets_a_config_field_and_refuses_unknown_names(tmp_path, small_pickle, photo):
    config = projector.build_config(None, 5, 1, "pixel", False, ["camera_start=grid", "locality_weight=2"])
    assert (config.camera_start, config.locality_weight, config.tune_steps) == ("grid", 2.0, 5)
    assert config.num_steps == inversion.InversionConfig().num_steps                  # unset: the library's
    r = CliRunner().invoke(projector.main, [f"--network={small_pickle}", f"--target={photo}", f"--outdir={tmp_path}",
                                            "--option=colour=blue", "--device=cpu"])
    assert r.exit_code != 0 and "--option: expected NAME=VALUE" in r.output and "Traceback" not in r.output
    assert os.listdir(tmp_path) == []


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


# ----------------------------------------------------------------------------- --projected errors


def _projected_error(script, path, tmp_path):
    args = [f"--projected={path}", "--device=cpu"]
    args += [f"--outdir={tmp_path / 'out'}"] if script is gen_images else [f"--output={tmp_path / 'o.gif'}"]
    r = CliRunner().invoke(script.main, args)
    assert r.exit_code != 0 and "Traceback" not in r.output and "weights_only" not in r.output, r.output
    errors = [line for line in r.output.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, r.output
    return errors[0]


def test_projected_image_file_says_it_is_an_image(tmp_path, photo):
    line = _projected_error(gen_video, photo, tmp_path)
    assert f"{photo} is an image, not an inversion file" in line


def test_projected_npz_names_the_inversion_file_beside_it(tmp_path, projected):
    out, _ = projected
    line = _projected_error(gen_images, out / "projected.npz", tmp_path)
    assert "NumPy .npz" in line and f"pass {out / 'inversion.pt'}" in line


def test_projected_missing_file_is_not_found(tmp_path):
    line = _projected_error(gen_images, tmp_path / "missing.pt", tmp_path)
    assert line == f"Error: inversion file not found: {tmp_path / 'missing.pt'}"


def test_projected_damaged_or_code_carrying_file_is_one_line(tmp_path, projected):
    out, _ = projected
    damaged = tmp_path / "damaged.pt"
    damaged.write_bytes((out / "inversion.pt").read_bytes()[:3000])
    assert "truncated, damaged" in _projected_error(gen_video, damaged, tmp_path)
    code = tmp_path / "code.pt"
    torch.save(_Payload(), code)
    assert "holds objects other than tensors" in _projected_error(gen_images, code, tmp_path)


class _Payload:
    """A pickled object of a class: what weights-only loading refuses."""

"""The per-network encoder: it learns camera and latent from pseudo pairs, its file holds no code
and belongs to one network, a file shipped beside a network is used without training, and its
estimate is the inversion's first report and start."""

from __future__ import annotations

import math
import os
import shutil

import numpy as np
import pytest
import torch

from raycond import feature_nets, inversion, loading
from conftest import fixed_camera_encoder
from raycond.inversion import encoder as enc


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    """Offline VGG16, and an empty cache so each test decides whether an encoder exists."""
    monkeypatch.setenv(feature_nets.VGG16_ENV, "file://" + str(tmp_path / "no-vgg16.pkl"))
    monkeypatch.setenv("DNNLIB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(loading, "DEFAULT_CHECKPOINT", str(tmp_path / "no-bundled.pkl"))


def blob_sample(yaw, pitch):
    """Toy pseudo pairs: a bright blob whose x follows yaw and y follows pitch; w = (yaw, pitch, 0, ...)."""
    n = yaw.shape[0]
    grid = torch.linspace(-1, 1, 32)
    x = (yaw / 30).reshape(n, 1, 1) * 0.6
    y = (pitch / 10).reshape(n, 1, 1) * 0.6
    img = torch.exp(-((grid[None, None, :] - x) ** 2 + (grid[None, :, None] - y) ** 2) / 0.05) * 2 - 1
    w = torch.zeros(n, 8)
    w[:, 0], w[:, 1] = yaw / 30, pitch / 10
    return img[:, None].repeat(1, 3, 1, 1), w


@pytest.fixture(scope="module")
def blob_encoder():
    return enc.train(blob_sample, 8, (-30, 30), (-10, 10), num_samples=256, steps=150, batch=16)


def test_encoder_learns_camera_and_latent_of_pseudo_pairs(blob_encoder):
    yaw, pitch = torch.tensor([-20.0, 5.0, 24.0]), torch.tensor([6.0, -7.0, 0.0])
    img, w = blob_sample(yaw, pitch)
    for i in range(3):
        y, p, w_hat = blob_encoder.predict(img[i:i + 1], mirror=False)
        assert abs(y - float(yaw[i])) < 4.0 and abs(p - float(pitch[i])) < 2.0
        assert float((w_hat[0, :2] - w[i, :2]).abs().max()) < 0.25


def test_encoder_file_round_trips_and_holds_no_code(blob_encoder, tmp_path):
    path = str(tmp_path / "net.encoder.safetensors")
    enc.save(blob_encoder, path, "ab" * 20, 256, 150)
    with open(path, "rb") as f:
        assert b"pickle" not in f.read(200) and os.path.getsize(path) < 8 * 2 ** 20
    loaded = enc.read(path, "ab" * 20)
    x = blob_sample(torch.tensor([12.0]), torch.tensor([-3.0]))[0]
    assert loaded.predict(x)[:2] == pytest.approx(blob_encoder.predict(x)[:2], abs=0.1)   # float16 weights


def test_encoder_file_of_another_network_or_not_an_encoder_is_refused(blob_encoder, tmp_path):
    path = str(tmp_path / "net.encoder.safetensors")
    enc.save(blob_encoder, path, "ab" * 20, 256, 150)
    with pytest.raises(ValueError, match="is the encoder of another network"):
        enc.read(path, "cd" * 20)
    junk = tmp_path / "junk.encoder.safetensors"
    junk.write_bytes(b"\x80\x04not safetensors")
    with pytest.raises(ValueError, match=f"{junk} is not an encoder file"):
        enc.read(str(junk))


def test_first_inversion_trains_and_caches_the_encoder_then_reuses_it(small_pickle):
    target = np.full((32, 32, 3), 120, np.uint8)
    lines = []
    inversion.invert(small_pickle, target, num_steps=1, tune_steps=0, log=lines.append)
    assert any("training this network's encoder" in line for line in lines)
    assert len(os.listdir(os.path.join(os.environ["DNNLIB_CACHE_DIR"], "raycond-encoder"))) == 1
    lines.clear()
    res = inversion.invert(small_pickle, target, num_steps=1, tune_steps=0, log=lines.append)
    assert not any("encoder" in line for line in lines) and res.meta["camera_start"] == "encoder"


def test_encoder_shipped_beside_the_network_is_used_without_training(small_pickle, tmp_path):
    G = loading.load_network(small_pickle)
    fp = inversion.fingerprint(G)
    net = enc.Encoder(G.w_dim, (-30, 30), (-10, 10))
    with torch.no_grad():
        net.camera_head.weight.zero_()
        net.camera_head.bias.copy_(torch.tensor([0.5, -0.3]))      # yaw 15, pitch -3 for the photo and its mirror image
    copy = tmp_path / "net.pkl"
    shutil.copy(small_pickle, copy)
    enc.save(net, enc.shipped_path(str(copy)), fp, 1, 1)
    reports, lines = [], []
    res = inversion.invert(str(copy), np.full((32, 32, 3), 90, np.uint8), num_steps=0, tune_steps=0,
                           progress=lambda *a: reports.append(a), log=lines.append)
    assert not any("training" in line for line in lines)
    # The camera is the mean of the photo's estimate and its mirror image's with yaw negated back.
    assert (res.meta["yaw_deg"], res.meta["pitch_deg"]) == pytest.approx((0.0, -3.0), abs=0.01)   # float16 file
    step, total, stage, loss, preview = reports[0]
    assert (step, total, stage) == (1, 1, "camera") and math.isfinite(loss) and preview.shape == (1, 3, 32, 32)


@pytest.mark.parametrize("header, expected", [
    ({"w_dim": "16"}, "header field 'camera' missing"),
    ({"w_dim": "1000000000", "camera": '{"centre": [0, 0], "span": [1, 1]}'}, "out of bounds"),
    ({"w_dim": "16", "camera": '{"centre": [0, 0], "span": ["nan", 1]}'}, "out of bounds"),
])
def test_encoder_header_is_checked_before_anything_is_built(tmp_path, header, expected):
    from safetensors.torch import save as st_save
    path = tmp_path / "bad.encoder.safetensors"
    path.write_bytes(st_save({"x": torch.zeros(1)}, metadata={"format": enc.FORMAT, **header}))
    with pytest.raises(ValueError, match=expected) as info:
        enc.read(str(path))
    assert str(path) in str(info.value)


# ----------------------------------------------------------------------------- camera reader (labelled photos)


def test_labelled_photos_reads_images_and_true_cameras(tmp_path):
    from conftest import make_camera_zip
    from raycond import camera as cam
    from raycond.inversion import labelled_photos
    path = make_camera_zip(tmp_path / "d.zip", n=12, res=16, seed=3)
    images, yaw_pitch = labelled_photos.load(path, 64, limit=5)
    assert images.shape == (5, 3, 64, 64) and images.dtype == torch.uint8
    rnd = np.random.RandomState(3)
    yaws, pitches = rnd.uniform(-30, 30, 12), rnd.uniform(-10, 10, 12)
    picked = np.linspace(0, 11, 5).round().astype(int)              # spread over the dataset
    assert yaw_pitch.numpy() == pytest.approx(np.stack([yaws[picked], pitches[picked]], 1), abs=1e-3)
    assert cam.LABEL_DIM == 25


def test_labelled_photos_refuses_data_without_camera_labels(tmp_path):
    import json
    import zipfile
    from raycond.inversion import labelled_photos
    with zipfile.ZipFile(tmp_path / "classes.zip", "w") as z:
        z.writestr("dataset.json", json.dumps({"labels": [["a.png", 3]]}))
    with pytest.raises(labelled_photos.LabelledPhotosError, match="no 25-float camera labels"):
        labelled_photos.load(str(tmp_path / "classes.zip"), 64)
    with zipfile.ZipFile(tmp_path / "bare.zip", "w") as z:
        z.writestr("a.png", b"")
    with pytest.raises(labelled_photos.LabelledPhotosError, match="has no dataset.json"):
        labelled_photos.load(str(tmp_path / "bare.zip"), 64)
    with pytest.raises(labelled_photos.LabelledPhotosError, match="not found"):
        labelled_photos.load(str(tmp_path / "missing.zip"), 64)


def test_camera_reader_gives_the_camera_and_round_trips_through_the_file(tmp_path):
    net = fixed_camera_encoder(8, 0.5, 0.5)
    net.camera_reader = fixed_camera_encoder(8, 0.0, -0.4, width=12)
    net.camera_photos = "12 photos of d.zip"
    x = torch.zeros(1, 3, 32, 32)
    assert net.predict(x, mirror=False)[:2] == pytest.approx((0.0, -4.0), abs=1e-5)   # the reader's, not 15/5
    path = str(tmp_path / "net.encoder.safetensors")
    enc.save(net, path, "ab" * 20, 1, 1)
    loaded = enc.read(path, "ab" * 20)
    assert loaded.camera_reader is not None and loaded.camera_reader.width == 12
    assert loaded.camera_photos == "12 photos of d.zip"
    assert loaded.predict(x)[:2] == pytest.approx((0.0, -4.0), abs=0.01)


def test_camera_reader_learns_the_camera_of_labelled_photos():
    yaw, pitch = torch.empty(400).uniform_(-30, 30), torch.empty(400).uniform_(-10, 10)
    img = ((blob_sample(yaw, pitch)[0] + 1) * 127.5).round().to(torch.uint8)
    img = torch.nn.functional.interpolate(img.float(), size=(64, 64)).to(torch.uint8)
    reader = enc.train_camera_reader(img, torch.stack([yaw, pitch], 1), 8, (-30, 30), (-10, 10), steps=150,
                                     batch=16, width=8)
    errs = [abs(reader.predict(img[i:i + 1].float() / 127.5 - 1, mirror=False)[0] - float(yaw[i])) for i in range(20)]
    assert np.mean(errs) < 5.0                                      # yaw spans 60 degrees


def test_inversion_keeps_the_camera_reader_s_camera_unless_asked(small_pickle, tmp_path):
    G = loading.load_network(small_pickle)
    net = fixed_camera_encoder(G.w_dim, 0.0, 0.0)
    net.camera_reader = fixed_camera_encoder(G.w_dim, 0.0, 0.25)        # pitch 2.5 degrees, yaw 0 (mirror-safe)
    copy = tmp_path / "net.pkl"
    shutil.copy(small_pickle, copy)
    enc.save(net, enc.shipped_path(str(copy)), inversion.fingerprint(G), 1, 1)
    photo = (np.random.RandomState(0).rand(32, 32, 3) * 255).astype(np.uint8)
    kept = inversion.invert(str(copy), photo, num_steps=4, tune_steps=0, verbose=False)
    assert kept.meta["camera_refined"] is False
    assert (kept.meta["yaw_deg"], kept.meta["pitch_deg"]) == pytest.approx((0.0, 2.5), abs=0.01)
    moved = inversion.invert(str(copy), photo, num_steps=4, tune_steps=0, verbose=False, refine_camera="yes",
                             camera_lr=2.0)
    assert moved.meta["camera_refined"] is True
    assert abs(moved.meta["yaw_deg"]) + abs(moved.meta["pitch_deg"] - 2.5) > 0.05


def test_train_encoder_cli_writes_an_encoder_with_a_camera_reader(small_pickle, tmp_path, monkeypatch, capsys):
    from conftest import make_camera_zip
    from raycond import pose_regressor
    from raycond.inversion import train_encoder
    monkeypatch.setenv(pose_regressor.QUICK_ENV, "1")
    data = make_camera_zip(tmp_path / "d.zip", n=20, res=32)
    out = tmp_path / "out.encoder.safetensors"
    assert train_encoder.main(["--network", small_pickle, "--data", data, "--out", str(out), "--steps", "5",
                               "--threads", "1"]) == 0
    err = capsys.readouterr()
    assert "camera error on the held-out photos" in err.out and f"wrote {out}" in err.out
    loaded = enc.read(str(out), inversion.fingerprint(loading.load_network(small_pickle)))
    assert loaded.camera_reader is not None and loaded.camera_photos.startswith("18 photos of d.zip")
    assert train_encoder.main(["--network", small_pickle, "--data", str(tmp_path / "none.zip"),
                               "--out", str(out)]) == 1
    assert "Error: " in capsys.readouterr().err


def test_train_encoder_reads_every_dataset_given(small_pickle, tmp_path, monkeypatch, capsys):
    from conftest import make_camera_zip
    from raycond import pose_regressor
    from raycond.inversion import train_encoder
    monkeypatch.setenv(pose_regressor.QUICK_ENV, "1")
    first = make_camera_zip(tmp_path / "a.zip", n=20, res=32)
    second = make_camera_zip(tmp_path / "b.zip", n=10, res=32)
    out = tmp_path / "out.encoder.safetensors"
    assert train_encoder.main(["--network", small_pickle, "--data", first, "--data", second, "--out", str(out),
                               "--steps", "5", "--threads", "1"]) == 0
    assert "27 labelled photos from a.zip + b.zip (3 held out)" in capsys.readouterr().out
    loaded = enc.read(str(out), inversion.fingerprint(loading.load_network(small_pickle)))
    assert loaded.camera_photos.startswith("27 photos of a.zip + b.zip")
    images, yaw_pitch = train_encoder.load_datasets([first, second], enc.SIZE, photos=5)
    assert images.shape == (10, 3, enc.SIZE, enc.SIZE) and yaw_pitch.shape == (10, 2)

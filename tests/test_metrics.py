"""Metrics against values computed independently: FID/KID/precision-recall/IS formulas, PPL on a
generator with a known path length, detector loading from file:// URLs, the dataset-statistics
cache, the JSONL record, and pose_err on data where the pose is plain to see.

Helpers here (fake detector, gradient dataset, toy generators) are also used by test_calc_metrics.
"""

from __future__ import annotations

import json
import math
import os
import pickle

import numpy as np
import PIL.Image
import pytest
import torch
import torch.nn.functional as F

import dnnlib
from metrics import frechet_inception_distance as fid_mod
from metrics import inception_score as is_mod
from metrics import kernel_inception_distance as kid_mod
from metrics import metric_main, metric_utils
from metrics import perceptual_path_length as ppl_mod
from metrics import pose_error
from metrics import precision_recall as pr_mod
from raycond import camera as cam

LPIPS_SCALE = 0.01 / 255  # the fake detector's "LPIPS" features are pixels (0..255) times this

# ----------------------------------------------------------------------------- helpers


class FakeDetector(torch.nn.Module):
    """Same call signature as NVIDIA's Inception/VGG16 TorchScript detectors, known outputs:
    features = fixed projection of 4x4 block means; probabilities = softmax of another projection;
    "LPIPS" features = the pixels times LPIPS_SCALE."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.register_buffer('proj', torch.randn(48, 16, generator=g))
        self.register_buffer('cls', torch.randn(48, 8, generator=g) * 3)

    def forward(self, img: torch.Tensor, return_features: bool = False, no_output_bias: bool = False,
                resize_images: bool = True, return_lpips: bool = False) -> torch.Tensor:
        x = img.float()
        if return_lpips:
            return x.flatten(1) * (0.01 / 255)
        pooled = F.adaptive_avg_pool2d(x / 255.0, 4).flatten(1)
        if return_features:
            return pooled @ self.proj
        return torch.softmax(pooled @ self.cls, dim=1)


def save_fake_detector(path) -> str:
    """TorchScript file of FakeDetector; returns its file:// URL."""
    torch.jit.save(torch.jit.script(FakeDetector()), str(path))
    return 'file://' + os.path.abspath(str(path))


def write_gradient_dataset(root, n=200, res=32, seed=0) -> str:
    """Folder dataset whose pose is plain to see: the red channel slopes left-right with yaw, the
    green channel up-down with pitch. Labels are real 25-float orbit cameras."""
    rng = np.random.RandomState(seed)
    yaw = rng.uniform(-30, 30, n)
    pitch = rng.uniform(-15, 15, n)
    labels = cam.camera_label(yaw, pitch).numpy()
    os.makedirs(root, exist_ok=True)
    entries = []
    for i in range(n):
        img = gradient_images(torch.tensor([yaw[i]]), torch.tensor([pitch[i]]), res, rng)[0]
        name = f'img{i:05d}.png'
        PIL.Image.fromarray(img.permute(1, 2, 0).numpy()).save(os.path.join(root, name))
        entries.append([name, [float(v) for v in labels[i]]])
    with open(os.path.join(root, 'dataset.json'), 'w') as f:
        json.dump({'labels': entries}, f)
    return str(root)


def gradient_images(yaw_deg, pitch_deg, res, rng=None) -> torch.Tensor:
    """uint8 (N, 3, res, res) images encoding yaw/pitch as brightness slopes."""
    u = torch.linspace(-1, 1, res)
    yy, xx = torch.meshgrid(u, u, indexing='ij')
    r = 128 + (yaw_deg.float()[:, None, None] * 3.5) * xx
    g = 128 + (pitch_deg.float()[:, None, None] * 7) * yy
    noise = torch.from_numpy(rng.randint(0, 255, size=(len(yaw_deg), res, res))).float() if rng is not None \
        else torch.full((len(yaw_deg), res, res), 128.0)
    return torch.stack([r, g, noise], dim=1).round().clamp(0, 255).to(torch.uint8)


class ToyMapping(torch.nn.Module):
    def __init__(self, z_dim, num_ws, c_dim):
        super().__init__()
        self.z_dim, self.num_ws, self.c_dim = z_dim, num_ws, c_dim
        self.w_dim = z_dim

    def forward(self, z, c, truncation_psi=1, truncation_cutoff=None, update_emas=False):
        RECORDED_Z.append(z.detach().clone())
        return z[:, None, :].repeat(1, self.num_ws, 1)


RECORDED_Z: list = []


class LinearSynthesis(torch.nn.Module):
    """img = reshape(w Bᵀ): linear in w, so the path length is known in closed form."""

    def __init__(self, w_dim, res):
        super().__init__()
        self.res = res
        self.register_buffer('B', torch.randn(w_dim, 3 * res * res, generator=torch.Generator().manual_seed(1)) * 0.1)

    def forward(self, ws, noise_mode='const', force_fp32=True):
        return (ws[:, 0] @ self.B).reshape(-1, 3, self.res, self.res)


class GradientSynthesis(torch.nn.Module):
    """Renders gradient_images: at the camera in c (obey=True) or at a pose read from w (ignores c)."""

    def __init__(self, res, obey, pitch_scale=1.0, yaw_offset=0.0):
        super().__init__()
        self.res, self.obey, self.pitch_scale, self.yaw_offset = res, obey, pitch_scale, yaw_offset

    def forward(self, ws, c, noise_mode='const', force_fp32=True):
        if self.obey:
            yaw, pitch, _ = cam.yaw_pitch_from_pose(c[:, :16].reshape(-1, 4, 4))
            yaw, pitch = yaw * 180 / math.pi + self.yaw_offset, pitch * 180 / math.pi * self.pitch_scale
        else:
            yaw, pitch = torch.tanh(ws[:, 0, 0]) * 30, torch.tanh(ws[:, 0, 1]) * 15
        return gradient_images(yaw, pitch, self.res).float() / 127.5 - 1


class ToyG(torch.nn.Module):
    def __init__(self, synthesis, z_dim=8, c_dim=0, res=16, num_ws=2):
        super().__init__()
        self.z_dim, self.w_dim, self.c_dim, self.num_ws = z_dim, z_dim, c_dim, num_ws
        self.img_resolution, self.img_channels = res, 3
        self.mapping = ToyMapping(z_dim, num_ws, c_dim)
        self.synthesis = synthesis


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    d = tmp_path / 'cache'
    monkeypatch.setenv('DNNLIB_CACHE_DIR', str(d))
    return d


@pytest.fixture
def fake_detectors(tmp_path, monkeypatch):
    url = save_fake_detector(tmp_path / 'fake_detector.pt')
    monkeypatch.setenv(metric_utils.INCEPTION_ENV, url)
    monkeypatch.setenv(metric_utils.VGG16_ENV, url)
    return url

# ----------------------------------------------------------------------------- FID


def test_fid_of_a_set_with_itself_is_zero():
    x = np.random.RandomState(0).randn(500, 16) @ np.random.RandomState(1).randn(16, 16)
    assert abs(fid_mod.fid_from_features(x, x)) < 1e-6


def test_fid_matches_closed_form_for_diagonal_gaussians():
    rng = np.random.RandomState(0)
    mu_a, mu_b = rng.randn(6), rng.randn(6)
    var_a, var_b = rng.uniform(0.1, 3, 6), rng.uniform(0.1, 3, 6)
    expected = np.sum((mu_a - mu_b) ** 2) + np.sum(var_a + var_b - 2 * np.sqrt(var_a * var_b))
    got = fid_mod.fid_from_stats(mu_a, np.diag(var_a), mu_b, np.diag(var_b))
    assert got == pytest.approx(expected, rel=1e-9)
    # and from samples of those Gaussians (sampling noise only)
    xa = mu_a + rng.randn(200000, 6) * np.sqrt(var_a)
    xb = mu_b + rng.randn(200000, 6) * np.sqrt(var_b)
    assert fid_mod.fid_from_features(xa, xb) == pytest.approx(expected, abs=0.05)

# ----------------------------------------------------------------------------- KID


def _direct_unbiased_mmd2(x, y):
    d = x.shape[1]
    k = lambda a, b: (float(np.dot(a, b)) / d + 1) ** 3  # noqa: E731
    m = x.shape[0]
    kxx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    kyy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    kxy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    return kxx + kyy - 2 * kxy


def test_kid_matches_direct_polynomial_mmd():
    rng = np.random.RandomState(0)
    real = rng.randn(25, 5)
    gen = rng.randn(25, 5) + 0.7
    got = kid_mod.kid_from_features(real, gen, num_subsets=1, max_subset_size=25, rng=np.random.RandomState(1))
    assert got == pytest.approx(_direct_unbiased_mmd2(gen, real), rel=1e-9)
    assert got > 0.1


def test_kid_of_two_samples_of_one_distribution_is_near_zero():
    rng = np.random.RandomState(0)
    a, b = rng.randn(2000, 8), rng.randn(2000, 8)
    shifted = rng.randn(2000, 8) + 0.5
    same = kid_mod.kid_from_features(a, b, num_subsets=10, max_subset_size=1000, rng=rng)
    diff = kid_mod.kid_from_features(a, shifted, num_subsets=10, max_subset_size=1000, rng=rng)
    assert abs(same) < 0.01
    assert diff > 20 * max(abs(same), 1e-3)

# ----------------------------------------------------------------------------- precision / recall


def test_precision_recall_on_constructed_manifolds():
    rng = np.random.RandomState(0)
    real = rng.randn(200, 4)
    assert pr_mod.precision_recall_from_features(real, real.copy()) == (1.0, 1.0)
    far = rng.randn(200, 4) + 100
    assert pr_mod.precision_recall_from_features(real, far) == (0.0, 0.0)
    # Points on a line with unit spacing: with k = 3 every ball reaches 2 (3 at the ends).
    line = np.zeros((200, 4))
    line[:, 0] = np.arange(200)
    half = np.concatenate([line[:100], line[:100] + 1000])  # half the generated points are real ones
    precision, recall = pr_mod.precision_recall_from_features(line, half, batch_size=37)
    assert precision == 0.5
    assert recall == 103 / 200  # real points 0..102 lie within the balls of generated points 0..99


# ----------------------------------------------------------------------------- inception score


def test_inception_score_known_outputs():
    assert is_mod.inception_score_from_probs(np.full((100, 10), 0.1), num_splits=5) == pytest.approx((1.0, 0.0))
    onehot = np.eye(7)[np.arange(140) % 7]
    mean, std = is_mod.inception_score_from_probs(onehot, num_splits=4)
    assert mean == pytest.approx(7.0) and std == pytest.approx(0.0, abs=1e-9)


def test_inception_score_of_constant_generator_is_one(fake_detectors):
    G = ToyG(LinearSynthesis(8, 16), c_dim=0)
    with torch.no_grad():
        G.synthesis.B.zero_()  # every image is the same grey
    opts = metric_utils.MetricOptions(G=G, device='cpu', seed=0)
    mean, std = is_mod.compute_is(opts, num_gen=40, num_splits=4)
    assert mean == pytest.approx(1.0, abs=1e-6) and std == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize('rank', [0, 1])
def test_metric_runs_the_callers_batch_hook_on_every_rank(fake_detectors, rank):
    """The thread policy is the entry point's: it reaches the metric loops as MetricOptions' on_batch."""
    calls = []
    progress = metric_utils.ProgressMonitor()
    opts = metric_utils.MetricOptions(G=ToyG(LinearSynthesis(8, 16), c_dim=0), device='cpu', seed=0,
                                      num_gpus=2, rank=rank, progress=progress, on_batch=lambda: calls.append(1))
    monitor = opts.progress.sub(tag='gen', num_items=40)
    for done in (16, 32, 40):
        monitor.update(done)
    assert len(calls) == 3


def test_a_metric_calls_the_batch_hook_between_its_batches(fake_detectors):
    calls = []
    opts = metric_utils.MetricOptions(G=ToyG(LinearSynthesis(8, 16), c_dim=0), device='cpu', seed=0,
                                      on_batch=lambda: calls.append(1))
    is_mod.compute_is(opts, num_gen=100, num_splits=4)    # two batches of at most 64
    assert len(calls) == 2

# ----------------------------------------------------------------------------- PPL


def test_ppl_on_linear_generator_matches_closed_form(fake_detectors):
    G = ToyG(LinearSynthesis(8, 16), c_dim=0)
    opts = metric_utils.MetricOptions(G=G, device='cpu', seed=0)
    RECORDED_Z.clear()
    got = ppl_mod.compute_ppl(opts, num_samples=64, epsilon=1e-3, space='w', sampling='end', crop=False,
                              batch_size=16)
    # Closed form: img = w B, pixels (img + 1)·127.5, "LPIPS" = pixels·s, so at t = 0
    # dist = ‖s·127.5·(w1 − w0) B‖² exactly, whatever ε is.
    B = G.synthesis.B.double()
    dists = []
    for z in RECORDED_Z:
        z0, z1 = z.double().chunk(2)
        dists.append(((LPIPS_SCALE * 127.5 * (z1 - z0) @ B) ** 2).sum(1))
    dists = torch.cat(dists).numpy()
    assert len(dists) == 64
    lo, hi = np.percentile(dists, 1, method='lower'), np.percentile(dists, 99, method='higher')
    expected = dists[(dists >= lo) & (dists <= hi)].mean()
    assert got == pytest.approx(expected, rel=2e-3)


def test_slerp_keeps_unit_length_and_endpoints():
    a, b = torch.randn(5, 8), torch.randn(5, 8)
    for t, ref in ((0.0, a), (1.0, b)):
        out = ppl_mod.slerp(a, b, torch.full((5, 1), t))
        assert torch.allclose(out, ref / ref.norm(dim=1, keepdim=True), atol=1e-5)
    mid = ppl_mod.slerp(a, b, torch.full((5, 1), 0.3))
    assert torch.allclose(mid.norm(dim=1), torch.ones(5), atol=1e-5)

# ----------------------------------------------------------------------------- detectors


def test_detector_loads_from_file_url_torchscript_and_pickle(tmp_path):
    url = save_fake_detector(tmp_path / 'det.pt')
    det = metric_utils.get_feature_detector(url)
    img = torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8)
    ref = FakeDetector()(img, return_features=True)
    assert torch.allclose(det(img, return_features=True), ref)
    # A pickle of the module (how NVIDIA's .pkl detectors load) works as well.
    with open(tmp_path / 'det.pkl', 'wb') as f:
        pickle.dump(FakeDetector(), f)
    det2 = metric_utils.get_feature_detector('file://' + str(tmp_path / 'det.pkl'))
    assert torch.allclose(metric_utils.run_detector(det2, img, return_features=True), ref)
    # Grayscale images are repeated to RGB.
    gray = img[:, :1]
    assert torch.allclose(metric_utils.run_detector(det2, gray, return_features=True),
                          ref.new_tensor(FakeDetector()(gray.repeat(1, 3, 1, 1), return_features=True)))


def test_detector_url_env_override_and_offline_error(tmp_path, monkeypatch, cache_dir):
    monkeypatch.delenv(metric_utils.INCEPTION_ENV, raising=False)
    assert metric_utils.inception_url() == metric_utils.INCEPTION_URL
    url = 'http://127.0.0.1:9/metrics/inception-2015-12-05.pkl'
    monkeypatch.setenv(metric_utils.INCEPTION_ENV, url)
    assert metric_utils.inception_url() == url
    with pytest.raises(dnnlib.util.DownloadError) as e:
        metric_utils.get_feature_detector(metric_utils.inception_url())
    msg = str(e.value)
    assert url in msg and str(cache_dir) in msg and '\n' not in msg

# ----------------------------------------------------------------------------- FID end to end, cache


def test_fid_end_to_end_against_direct_computation_and_cache(tmp_path, fake_detectors, cache_dir):
    data = write_gradient_dataset(tmp_path / 'data', n=40, res=16)
    dataset_kwargs = dnnlib.EasyDict(class_name='training.dataset.ImageFolderDataset', path=data,
                                     use_labels=True, xflip=False)
    G = ToyG(LinearSynthesis(8, 16), c_dim=0)
    with torch.no_grad():
        G.synthesis.B.zero_()  # constant grey images: generated covariance is zero
    opts = metric_utils.MetricOptions(G=G, dataset_kwargs=dataset_kwargs, device='cpu', seed=0)
    got = fid_mod.compute_fid(opts, max_real=None, num_gen=24)

    ds = metric_utils.make_dataset(dataset_kwargs)
    det = FakeDetector()
    real = det(torch.from_numpy(np.stack([ds[i][0] for i in range(len(ds))])), return_features=True).double().numpy()
    grey = det(torch.full((1, 3, 16, 16), 128, dtype=torch.uint8), return_features=True).double().numpy()[0]
    mu, cov = real.mean(0), np.cov(real, rowvar=False, bias=True)
    expected = np.sum((mu - grey) ** 2) + np.trace(cov)
    assert got == pytest.approx(expected, rel=1e-4)

    cache_files = os.listdir(cache_dir / 'gan-metrics')
    assert len(cache_files) == 1 and cache_files[0].startswith('data-fake_detector-')


def test_dataset_stats_cache_is_reused(tmp_path, fake_detectors, cache_dir, monkeypatch):
    data = write_gradient_dataset(tmp_path / 'data', n=20, res=16)
    dk = dnnlib.EasyDict(class_name='training.dataset.ImageFolderDataset', path=data, use_labels=True)
    opts = metric_utils.MetricOptions(dataset_kwargs=dk, device='cpu')
    first = metric_utils.compute_feature_stats_for_dataset(opts, fake_detectors, dict(return_features=True),
                                                           capture_mean_cov=True)
    assert first.num_items == 20

    def no_detector(*args, **kwargs):
        raise AssertionError('the second run must read the cache')
    monkeypatch.setattr(metric_utils, 'get_feature_detector', no_detector)
    second = metric_utils.compute_feature_stats_for_dataset(opts, fake_detectors, dict(return_features=True),
                                                            capture_mean_cov=True)
    assert np.allclose(first.get_mean_cov()[1], second.get_mean_cov()[1])
    # Different options (a subset) are a different cache entry.
    with pytest.raises(AssertionError, match='cache'):
        metric_utils.compute_feature_stats_for_dataset(opts, fake_detectors, dict(return_features=True),
                                                       capture_mean_cov=True, max_items=10)

# ----------------------------------------------------------------------------- registry & JSONL


def test_registry_names_and_unknown_metric():
    names = metric_main.list_valid_metrics()
    for name in ('fid50k_full', 'kid50k_full', 'pr50k3_full', 'ppl2_wend', 'is50k', 'fid50k', 'kid50k', 'pr50k3',
                 'fid5k_full', 'fid1k_full', 'kid5k_full', 'pr5k3_full', 'pose_err'):
        assert metric_main.is_valid_metric(name), name
    assert metric_main.parse_metric_list('none') == []
    assert metric_main.parse_metric_list('fid5k_full, kid5k_full') == ['fid5k_full', 'kid5k_full']
    with pytest.raises(ValueError, match='fid50k_full'):
        metric_main.parse_metric_list('fid51k')
    with pytest.raises(ValueError, match='unknown metric'):
        metric_main.calc_metric('nope', G=None)
    assert len(names) == len(set(names))


def test_report_metric_jsonl_format(tmp_path, capsys):
    result = dnnlib.EasyDict(results=dnnlib.EasyDict(fid5k_full=12.5), metric='fid5k_full', total_time=3.25,
                             total_time_str='3s', num_gpus=1, images_per_sec={'generator features': 10.0})
    snap = tmp_path / 'network-snapshot-000040.pkl'
    for _ in range(2):
        metric_main.report_metric(result, run_dir=str(tmp_path), snapshot_pkl=str(snap))
    lines = (tmp_path / 'metric-fid5k_full.jsonl').read_text().splitlines()
    assert len(lines) == 2
    rec = json.loads(lines[0])
    assert set(rec) == {'results', 'metric', 'total_time', 'total_time_str', 'num_gpus', 'snapshot_pkl', 'timestamp'}
    assert rec['results'] == {'fid5k_full': 12.5} and rec['metric'] == 'fid5k_full'
    assert rec['snapshot_pkl'] == 'network-snapshot-000040.pkl' and rec['num_gpus'] == 1
    assert abs(rec['timestamp'] - __import__('time').time()) < 60
    assert json.loads(capsys.readouterr().out.splitlines()[0])['metric'] == 'fid5k_full'

# ----------------------------------------------------------------------------- pose_err


def test_pose_err_small_for_obedient_large_for_camera_ignoring(tmp_path, cache_dir):
    data = write_gradient_dataset(tmp_path / 'poses', n=240, res=16)
    dk = dnnlib.EasyDict(class_name='training.dataset.ImageFolderDataset', path=data, use_labels=True, xflip=False)
    est = dict(input_res=16, steps=250, batch_size=32, channels=(16, 32))
    obey = ToyG(GradientSynthesis(16, obey=True), c_dim=25)
    ignore = ToyG(GradientSynthesis(16, obey=False), c_dim=25)  # takes the camera, ignores it

    r_obey = pose_error.compute_pose_err(metric_utils.MetricOptions(G=obey, dataset_kwargs=dk, device='cpu', seed=0),
                                         num_gen=96, **est)
    assert len(os.listdir(cache_dir / 'gan-metrics')) == 1  # the estimator is cached
    r_ignore = pose_error.compute_pose_err(metric_utils.MetricOptions(G=ignore, dataset_kwargs=dk, device='cpu',
                                                                      seed=0), num_gen=96, **est)
    print(r_obey, r_ignore)
    assert r_obey['pose_err_real_floor'] == r_ignore['pose_err_real_floor']  # same cached estimator
    assert r_obey['pose_err_real_floor'] < 2
    assert r_obey['pose_err'] < 2
    assert r_ignore['pose_err'] > 8 and r_ignore['pose_err_yaw'] > 10
    assert r_obey['pose_err'] == pytest.approx((r_obey['pose_err_yaw'] + r_obey['pose_err_pitch']) / 2)


def test_pose_err_reports_response_slope_and_bias(tmp_path, cache_dir):
    """A generator that turns half the asked pitch and adds 5° of yaw is told apart from an obedient one."""
    data = write_gradient_dataset(tmp_path / 'poses', n=240, res=16)
    dk = dnnlib.EasyDict(class_name='training.dataset.ImageFolderDataset', path=data, use_labels=True, xflip=False)
    est = dict(input_res=16, steps=250, batch_size=32, channels=(16, 32))
    results = {}
    for name, synth in [('obey', GradientSynthesis(16, obey=True)),
                        ('lazy', GradientSynthesis(16, obey=True, pitch_scale=0.5, yaw_offset=5.0))]:
        opts = metric_utils.MetricOptions(G=ToyG(synth, c_dim=25), dataset_kwargs=dk, device='cpu', seed=0)
        results[name] = pose_error.compute_pose_err(opts, num_gen=128, **est)
    obey, lazy = results['obey'], results['lazy']
    assert obey['pose_err_yaw_slope'] == pytest.approx(1.0, abs=0.15)
    assert obey['pose_err_pitch_slope'] == pytest.approx(1.0, abs=0.15)
    assert abs(obey['pose_err_yaw_bias']) < 1.5 and abs(obey['pose_err_pitch_bias']) < 1.5
    assert lazy['pose_err_pitch_slope'] == pytest.approx(0.5 * obey['pose_err_pitch_slope'], abs=0.12)
    assert lazy['pose_err_yaw_slope'] == pytest.approx(obey['pose_err_yaw_slope'], abs=0.1)
    assert lazy['pose_err_yaw_bias'] - obey['pose_err_yaw_bias'] == pytest.approx(5.0, abs=1.5)
    assert lazy['pose_err'] > obey['pose_err'] + 1


def test_pose_response_from_moments():
    asked = torch.tensor([[-30.0, -10.0], [0.0, 0.0], [30.0, 10.0], [10.0, 5.0]], dtype=torch.float64)
    seen = torch.stack([asked[:, 0] * 0.9 + 2.0, asked[:, 1] * 0.5 - 1.0], dim=1)
    moments = torch.stack([asked.sum(0), seen.sum(0), (asked * asked).sum(0), (asked * seen).sum(0)])
    r = pose_error.pose_response(moments, 4)
    assert r['yaw'] == pytest.approx((0.9, 2.0)) and r['pitch'] == pytest.approx((0.5, -1.0))
    flat = pose_error.pose_response(torch.zeros(4, 2, dtype=torch.float64), 4)  # no spread of asked angles
    assert math.isnan(flat['yaw'][0])


def test_pose_err_needs_camera_labels(tmp_path):
    root = tmp_path / 'nolabels'
    root.mkdir()
    for i in range(12):
        PIL.Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(root / f'{i}.png')
    dk = dnnlib.EasyDict(class_name='training.dataset.ImageFolderDataset', path=str(root))
    G = ToyG(GradientSynthesis(16, obey=False), c_dim=0)
    with pytest.raises(ValueError, match='camera labels'):
        pose_error.compute_pose_err(metric_utils.MetricOptions(G=G, dataset_kwargs=dk, device='cpu'), num_gen=8)


def test_yaw_pitch_from_labels_and_wrapped_errors():
    c = cam.camera_label(torch.tensor([25.0, -10.0]), torch.tensor([5.0, -12.0]))
    yp = pose_error.yaw_pitch_deg(c)
    assert torch.allclose(yp, torch.tensor([[25.0, 5.0], [-10.0, -12.0]]), atol=1e-3)
    err = pose_error.angle_errors(torch.tensor([[179.0, 0.0]]), torch.tensor([[-179.0, 1.0]]))
    assert torch.allclose(err, torch.tensor([[2.0, 1.0]]))

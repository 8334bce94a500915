"""Camera-control accuracy (`pose_err`): does the generator show the viewpoint it was asked for?

A small CNN pose estimator learns to read (yaw, pitch) from the dataset's real images (whose
25-float camera labels give the truth through raycond.camera.yaw_pitch_from_pose). It trains once
per dataset (up to 4000 images seen at 32², about half a minute on one CPU core) and is cached
under dnnlib's 'gan-metrics' folder; head pose is a coarse property, so 32² loses little (on the
synthetic heads the held-out error is about 1.3° at 32² and 1.1° at 64², which takes 8x
longer). A held-out tenth of the real images measures the estimator's own error (its floor); the
network and its training loop are shared with other probes (training/terms/probes.py), the cache with
the other metrics (metrics/probe.py). The
metric then renders generated images at cameras drawn from the labels and reports the mean absolute yaw/pitch error, in degrees, between what was asked and what the
estimator sees. A generator that ignores the camera scores far above the floor. Beside it, the
metric reports the pose *response* per axis (`pose_err_yaw_slope`, `..._bias`): the line that
fits seen against asked angles (on the synthetic heads the estimator itself gives 0.99 / 0.95 on
real images).
"""

from __future__ import annotations

import torch

from metrics import metric_utils
from metrics import probe
from raycond import camera as cam
from training.terms import probes
from training.terms.pose_reader import PoseEstimator, train_pose_estimator, yaw_pitch_deg



def angle_differences(pred, target) -> torch.Tensor:
    """pred − target in degrees, wrapped to [−180, 180) (yaw crosses ±180)."""
    return cam.wrap_deg(pred - target)


def angle_errors(pred, target) -> torch.Tensor:
    """|pred − target| in degrees, with yaw wrapped to [−180, 180)."""
    return angle_differences(pred, target).abs()

# ----------------------------------------------------------------------------- training


def _load_real_images(dataset, indices, input_res, batch=256):
    """Selected dataset images resized to input_res (uint8) and their yaw/pitch (degrees)."""
    images, labels = probes.load_real_images(dataset, indices, input_res, batch)
    return images, yaw_pitch_deg(labels)


def split_indices(num_images, holdout_frac=0.1, max_train=4000, max_holdout=1000, seed=0):
    """Deterministic (train, held-out) index arrays of a dataset's images."""
    return probes.split_indices(num_images, holdout_frac, max_train, max_holdout, seed, what='pose_err')


def evaluate_estimator(model, images, targets, batch=256):
    """Mean absolute (yaw, pitch) error in degrees of the estimator on labelled images."""
    errs = []
    dev = next(model.parameters()).device
    with torch.no_grad():
        for start in range(0, images.shape[0], batch):
            pred = model(images[start:start + batch].to(dev)).cpu()
            errs.append(angle_errors(pred, targets[start:start + batch]))
    return torch.cat(errs).mean(dim=0)


def get_pose_estimator(opts, input_res=32, steps=1500, batch_size=64, max_train=4000, seed=0,
                       channels=(24, 48, 64)):
    """The dataset's pose estimator (trained now, or loaded from the cache) and its held-out error
    as a dict {'yaw': deg, 'pitch': deg}."""
    kwargs = probes.probe_dataset_kwargs(opts.dataset_kwargs)
    dataset = metric_utils.make_dataset(kwargs)
    res = int(min(input_res, dataset.resolution))
    config = dict(input_res=res, steps=steps, batch_size=batch_size, max_train=max_train, seed=seed,
                  channels=list(channels), version=2)

    def train():
        train_idx, holdout_idx = split_indices(len(dataset), max_train=max_train, seed=seed)
        train_images, train_targets = _load_real_images(dataset, train_idx, res)
        hold_images, hold_targets = _load_real_images(dataset, holdout_idx, res)
        progress = opts.progress.sub(tag='pose estimator', num_items=steps, unit='step')
        model = train_pose_estimator(train_images, train_targets, steps=steps, batch_size=batch_size, seed=seed,
                                     device=opts.device, progress=progress, input_res=res, channels=channels)
        err = evaluate_estimator(model, hold_images, hold_targets)
        return model, dict(floor=dict(yaw=float(err[0]), pitch=float(err[1])))

    model, extra = probe.cached_probe(opts, 'pose-estimator', dataset, kwargs, config,
                                      build=lambda: PoseEstimator(input_res=res, channels=channels), train=train)
    return model, dict(extra['floor'])

# ----------------------------------------------------------------------------- the metric


def compute_pose_err(opts, num_gen, batch_size=64, **estimator_kwargs) -> dict:
    """Mean |yaw|/|pitch| error (degrees) of `num_gen` generated images at cameras drawn from the
    dataset's labels, with the estimator's error on held-out real images as the floor."""
    labels = metric_utils.dataset_labels(opts.dataset_kwargs)
    if labels.shape[1] != cam.LABEL_DIM:
        raise ValueError(f'pose_err needs a dataset with {cam.LABEL_DIM}-value camera labels; '
                         f'{opts.dataset_kwargs.get("path")} has labels of size {labels.shape[1]}')
    model, floor = get_pose_estimator(opts, **estimator_kwargs)
    G = metric_utils.prepare_generator(opts)
    if G.c_dim not in (0, cam.LABEL_DIM):
        raise ValueError(f'pose_err needs a camera-conditioned (c_dim={cam.LABEL_DIM}) or camera-less network, got c_dim={G.c_dim}')
    rng = opts.numpy_rng(salt=4)
    zgen = opts.torch_generator(salt=4)

    per_rank = (num_gen + opts.num_gpus - 1) // opts.num_gpus
    err_sum = torch.zeros(2, dtype=torch.float64)
    moments = torch.zeros(4, 2, dtype=torch.float64)  # sums of asked, seen, asked², asked·seen (yaw, pitch)
    count = 0
    progress = opts.progress.sub(tag='pose_err generation', num_items=per_rank * opts.num_gpus)
    while count < per_rank:
        n = min(batch_size, per_rank - count)
        c = torch.from_numpy(labels[rng.randint(len(labels), size=n)]).to(opts.device)
        z = torch.randn([n, G.z_dim], generator=zgen).to(opts.device)
        with torch.no_grad():
            img = metric_utils.generate_uint8(G, z, c if G.c_dim else c[:, :0], opts.G_kwargs)
            pred = model(img).cpu()
        asked = yaw_pitch_deg(c.cpu())
        diff = angle_differences(pred, asked).double()
        err_sum += diff.abs().sum(dim=0)
        asked = asked.double()
        seen = asked + diff  # yaw unwrapped next to the asked one
        moments += torch.stack([asked.sum(0), seen.sum(0), (asked * asked).sum(0), (asked * seen).sum(0)])
        count += n
        progress.update(count * opts.num_gpus)
    progress.close()
    err_sum = metric_utils.all_reduce_sum(err_sum.to(opts.device), opts.num_gpus).cpu()
    moments = metric_utils.all_reduce_sum(moments.to(opts.device), opts.num_gpus).cpu()
    total = count * opts.num_gpus
    yaw, pitch = (err_sum / total).tolist()
    response = pose_response(moments, total)
    return dict(pose_err=(yaw + pitch) / 2, pose_err_yaw=yaw, pose_err_pitch=pitch,
                pose_err_real_floor=(floor['yaw'] + floor['pitch']) / 2,
                pose_err_real_yaw=floor['yaw'], pose_err_real_pitch=floor['pitch'],
                pose_err_yaw_slope=response['yaw'][0], pose_err_yaw_bias=response['yaw'][1],
                pose_err_pitch_slope=response['pitch'][0], pose_err_pitch_bias=response['pitch'][1])


def pose_response(moments, n) -> dict:
    """Least-squares line seen ≈ slope · asked + bias per axis, from the sums (asked, seen, asked²,
    asked·seen). It tells *why* pose_err is high: a slope below 1 is a generator that turns less
    than asked (under-expressed pose), a bias a constant offset; 1 and 0 leave only scatter."""
    s_a, s_s, s_aa, s_as = moments.double()
    var = n * s_aa - s_a * s_a
    slope = torch.where(var > 0, (n * s_as - s_a * s_s) / var.clamp_min(1e-12), torch.full_like(var, float('nan')))
    bias = (s_s - slope * s_a) / n
    return {'yaw': (float(slope[0]), float(bias[0])), 'pitch': (float(slope[1]), float(bias[1]))}

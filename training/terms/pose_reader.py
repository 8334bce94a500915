"""The frozen camera reader that the `pose` term pays against, and the estimator class it shares
with the `pose_err` metric.

A small CNN learns (yaw, pitch) from the training set's labelled real images before training
starts and is frozen. It is the metric's estimator class with another seed, width and image
sample (`CONFIG`), so that the metric still measures with a network G was never trained against.
It is kept in the run directory (`pose-reader.pt`, weights only), so a resumed run pays the same loss.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from raycond import camera as cam
from training.terms import probes

FILE_NAME = 'pose-reader.pt'
CONFIG = dict(input_res=32, channels=(32, 64, 96), steps=1500, batch_size=64, max_images=8000, seed=1, version=1)


class PoseEstimator(probes.ConvProbe):
    """uint8/float images (N, C, H, W) in 0..255 → (N, 2) = (yaw, pitch) in degrees."""

    def __init__(self, input_res=32, channels=(24, 48, 64), hidden=128):
        super().__init__(input_res=input_res, channels=channels, hidden=hidden, out_dim=2)
        self.register_buffer('target_mean', torch.zeros(2))
        self.register_buffer('target_std', torch.ones(2))

    def forward(self, images):
        return self.forward_normalized(self.preprocess(images)) * self.target_std + self.target_mean


def yaw_pitch_deg(labels) -> torch.Tensor:
    """(N, 25) camera labels → (N, 2) yaw and pitch in degrees."""
    labels = torch.as_tensor(np.asarray(labels), dtype=torch.float32)
    if labels.ndim != 2 or labels.shape[1] != cam.LABEL_DIM:
        raise ValueError(f'pose_err needs {cam.LABEL_DIM}-value camera labels, got labels of shape {tuple(labels.shape)}')
    return cam.label_yaw_pitch_deg(labels)


def train_pose_estimator(images, targets, steps=1500, batch_size=64, lr=2e-3, seed=0, device='cpu',
                         progress=None, input_res=None, channels=(24, 48, 64)):
    """Fit a PoseEstimator to uint8 images (N, C, r, r) and (N, 2) yaw/pitch targets in degrees.
    Random x-flips (with yaw negated, which is exactly the mirrored camera) augment the data."""
    model = probes.seeded_init(lambda: PoseEstimator(input_res=input_res or images.shape[-1], channels=channels), seed)
    model.target_mean.copy_(torch.tensor([0.0, float(targets[:, 1].mean())]))
    model.target_std.copy_(targets.std(dim=0).clamp_min(1.0))
    norm_targets = (targets - model.target_mean) / model.target_std
    flip_sign = torch.tensor([-1.0, 1.0])

    def loss_fn(out, idx, flipped):
        y = norm_targets[idx]
        y = torch.where(flipped[:, None], y * flip_sign, y)  # yaw is normalized about 0: a flip negates it
        return F.smooth_l1_loss(out, y.to(out.device))

    return probes.fit(model, images, loss_fn, steps, batch_size, lr, seed=seed, device=device,
                      progress=progress, flip=True)


def build(config: dict) -> PoseEstimator:
    """An untrained reader of `config`'s shape (saved weights load into it)."""
    return PoseEstimator(input_res=config['input_res'], channels=tuple(config['channels']))


def train_reader(training_set, config: dict | None = None, device='cpu', progress=None) -> PoseEstimator:
    """Fit a reader to (up to max_images of) the training set's real images and camera labels."""
    config = CONFIG if config is None else config
    if training_set.label_dim != cam.LABEL_DIM:
        raise ValueError(f'--term=pose needs {cam.LABEL_DIM}-value camera labels, the training set has '
                         f'labels of size {training_set.label_dim}')
    count = min(len(training_set), int(config['max_images']))
    indices = np.sort(np.random.RandomState(config['seed']).permutation(len(training_set))[:count])
    images, labels = probes.load_real_images(training_set, indices, config['input_res'])
    return train_pose_estimator(images, yaw_pitch_deg(labels), steps=config['steps'], batch_size=config['batch_size'],
                                seed=config['seed'], device=device, progress=progress,
                                input_res=config['input_res'], channels=tuple(config['channels']))


def load_or_train(run_dir: str, training_set, device='cpu', rank: int = 0, num_gpus: int = 1,
                  config: dict | None = None, resume_pkl: str | None = None) -> PoseEstimator:
    """The run's reader, frozen, on `device` (see probes.load_or_train_in_run)."""
    config = CONFIG if config is None else config

    def train():
        print(f'Training the pose reader for --term=pose on {min(len(training_set), config["max_images"])} '
              f'real images ({config["steps"]} steps)...')
        return train_reader(training_set, config, device='cpu'), {}

    model, _extra = probes.load_or_train_in_run(run_dir, FILE_NAME, config, build=lambda: build(config), train=train,
                                                what='Pose reader for --term=pose', device=device, rank=rank,
                                                num_gpus=num_gpus, resume_pkl=resume_pkl)
    return model

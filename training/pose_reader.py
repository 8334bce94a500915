"""A frozen camera reader for the generator's pose loss (`train.py --pose-loss`).

The discriminator of a ray-conditioned GAN learns pose only as far as the adversarial game asks
for it: on the 64² synthetic heads a projection D (even matching-aware, `--pose-negatives`)
prefers the right camera over one turned by 2° for about 60 % of real images, so a generated head
a few degrees off its asked pose is hardly punished. This module gives G a direct signal instead:
a small CNN learns (yaw, pitch) from the training set's own labelled real images before training
starts, is frozen, and G pays for the difference between what it reads on a generated image and
the camera the image was asked for.

It is deliberately *not* the `pose_err` metric's estimator: a different seed, width and image
sample (every training image, not the metric's split), so that the metric still measures with a
network G never saw. Both learn the same task from the same data, though, so a lower `pose_err`
after training with this loss should be confirmed by measures that do not read pose with a CNN
(the photo-editing benchmark's novel views against ground-truth renders).

Each generated image is read once as it is and once mirrored (with the asked yaw negated: the
mirror image of an orbit camera about a look-at point on the symmetry plane, as `--mirror`
assumes), and the two readings are averaged, so that G cannot profit from the reader's left/right
asymmetries. The reader is written to the run directory (`pose-reader.pt`, weights only), so a
resumed run pays the same loss.
"""

from __future__ import annotations

import math
import os

import numpy as np
import torch
import torch.nn.functional as F

import dnnlib
from metrics import pose_error
from metrics import probe
from raycond import camera as cam

FILE_NAME = 'pose-reader.pt'
CONFIG = dict(input_res=32, channels=(32, 64, 96), steps=1500, batch_size=64, max_images=8000, seed=1, version=1)


def asked_yaw_pitch(c: torch.Tensor) -> torch.Tensor:
    """(N, 25) camera labels → (N, 2) asked yaw and pitch in degrees, on the labels' device."""
    yaw, pitch, _ = cam.yaw_pitch_from_pose(c[:, :cam.POSE_DIM].reshape(-1, 4, 4))
    return torch.stack([yaw, pitch], dim=1) * (180 / math.pi)


def _build(config: dict) -> pose_error.PoseEstimator:
    return pose_error.PoseEstimator(input_res=config['input_res'], channels=tuple(config['channels']))


def train_reader(training_set, config: dict | None = None, device='cpu', progress=None) -> pose_error.PoseEstimator:
    """Fit a reader to (up to max_images of) the training set's real images and camera labels."""
    config = CONFIG if config is None else config
    if training_set.label_dim != cam.LABEL_DIM:
        raise ValueError(f'--pose-loss needs {cam.LABEL_DIM}-value camera labels, the training set has '
                         f'labels of size {training_set.label_dim}')
    count = min(len(training_set), int(config['max_images']))
    indices = np.sort(np.random.RandomState(config['seed']).permutation(len(training_set))[:count])
    images, labels = probe.load_real_images(training_set, indices, config['input_res'])
    targets = pose_error.yaw_pitch_deg(labels)
    return pose_error.train_pose_estimator(images, targets, steps=config['steps'], batch_size=config['batch_size'],
                                           seed=config['seed'], device=device, progress=progress,
                                           input_res=config['input_res'], channels=tuple(config['channels']))


def load_or_train(run_dir: str, training_set, device='cpu', rank: int = 0, num_gpus: int = 1,
                  config: dict | None = None, resume_pkl: str | None = None) -> pose_error.PoseEstimator:
    """The run's reader, frozen, in eval mode, on `device`: loaded from `run_dir/pose-reader.pt`;
    else copied from beside `resume_pkl` (a resumed run keeps the reader it was trained with);
    else trained now by rank 0 and saved there (the other ranks wait and load it)."""
    config = CONFIG if config is None else config
    path = os.path.join(run_dir, FILE_NAME)
    if rank == 0 and not _matches(path, config):
        previous = os.path.join(os.path.dirname(resume_pkl), FILE_NAME) if _is_local(resume_pkl) else None
        if previous is not None and _matches(previous, config):
            print(f'Pose reader for --pose-loss: {previous}')
            state = torch.load(previous, map_location='cpu', weights_only=True)
        else:
            print(f'Training the pose reader for --pose-loss on {min(len(training_set), config["max_images"])} '
                  f'real images ({config["steps"]} steps)...')
            model = train_reader(training_set, config, device='cpu')
            state = dict(model={k: v.cpu() for k, v in model.state_dict().items()}, config=_jsonable(config))
        dnnlib.util.atomic_write(path, lambda f: torch.save(state, f))
    if num_gpus > 1:
        torch.distributed.barrier()
    state = torch.load(path, map_location='cpu', weights_only=True)
    model = _build(config)
    model.load_state_dict(state['model'])
    return model.eval().requires_grad_(False).to(device)


def _is_local(path: str | None) -> bool:
    return bool(path) and not dnnlib.util.is_url(path) and os.path.isfile(path)


def _jsonable(config: dict) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in config.items()}


def _matches(path: str, config: dict) -> bool:
    """True when `path` holds a reader made with `config` (an older or other one is retrained)."""
    if not os.path.isfile(path):
        return False
    try:
        state = torch.load(path, map_location='cpu', weights_only=True)
    except Exception:  # a damaged file is simply made again
        return False
    return state.get('config') == _jsonable(config)


def pose_loss(reader: pose_error.PoseEstimator, img: torch.Tensor, c: torch.Tensor, margin_deg: float = 0.0):
    """Per-image pose loss of generated images `img` (N, C, H, W in [-1, 1]) asked for cameras `c`.

    Returns (loss (N,), absolute error in degrees (N, 2)): a smooth-L1 of the reading's error in
    units of the training set's yaw/pitch spread, read on the image and its mirror image. Errors
    within `margin_deg` cost nothing: the reader's own noise differs between kinds of image (on
    the synthetic heads it reads long hair and bald heads less precisely), and a loss that charged
    for that noise would pay G to make fewer of the hard kinds.
    """
    asked = asked_yaw_pitch(c.detach().float())
    x = (img.float() + 1) * 127.5
    both = reader(torch.cat([x, x.flip(3)]))
    n = img.shape[0]
    read = (both[:n] + both[n:] * torch.tensor([-1.0, 1.0], device=both.device)) / 2
    diff = pose_error.angle_differences(read, asked)
    excess = (diff.abs() - float(margin_deg)).clamp_min(0)
    loss = F.smooth_l1_loss(excess / reader.target_std, torch.zeros_like(excess), reduction='none').sum(dim=1)
    return loss, diff.detach().abs()


def ray_parameters(G: torch.nn.Module) -> list[tuple[torch.nn.Parameter, torch.Tensor]]:
    """(parameter, 0/1 mask) pairs of the weights through which G sees the camera: in each
    ray-conditioned layer, the convolution weights over the ray input channels (the last
    `ray_channels`) and the style rows that modulate them. With `--pose-loss-params=rays` the pose
    loss trains only these, so it can teach G how to turn a head but has no direct say in which
    heads G draws."""
    pairs = []
    for module in G.modules():
        rays = getattr(module, 'ray_channels', 0)
        weight = getattr(module, 'weight', None)
        affine = getattr(module, 'affine', None)
        if not rays or not isinstance(weight, torch.nn.Parameter) or affine is None or weight.ndim != 4:
            continue
        mask = torch.zeros_like(weight)
        mask[:, -rays:] = 1
        pairs.append((weight, mask))
        for p in (affine.weight, affine.bias):
            mask = torch.zeros_like(p)
            mask[-rays:] = 1
            pairs.append((p, mask))
    if not pairs:
        raise ValueError('--pose-loss-params=rays needs a generator whose layers take camera rays (raycond2)')
    return pairs


def trained_parameters(G: torch.nn.Module, which: str) -> list[tuple[torch.nn.Parameter, torch.Tensor]] | None:
    """What `--pose-loss-params` lets the pose loss train, as (parameter, 0/1 mask) pairs: None for
    'all' (the loss simply joins G's), the ray weights for 'rays', every synthesis weight for
    'synthesis' (the mapping network, which decides which heads G draws, is left to D)."""
    if which == 'all':
        return None
    if which == 'rays':
        return ray_parameters(G)
    if which == 'synthesis':
        return [(p, torch.ones_like(p)) for p in G.synthesis.parameters()]
    raise ValueError(f"pose_loss_params must be 'all', 'rays' or 'synthesis', got {which!r}")

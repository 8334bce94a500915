"""The frozen camera reader behind `train.py --pose-loss`: trained on the real images, saved per run.

The discriminator of a ray-conditioned GAN learns pose only as far as the adversarial game asks
for it: on the 64² synthetic heads a projection D (even matching-aware, `--pose-negatives`)
prefers the right camera over one turned by 2° for about 60 % of real images, so a generated head
a few degrees off its asked pose is hardly punished. `--pose-loss` gives G a direct signal
instead (training/pose_loss.py): a small CNN learns (yaw, pitch) from the training set's own
labelled real images before training starts, is frozen, and G pays for the difference between
what it reads on a generated image and the camera the image was asked for.

The reader is the `pose_err` metric's estimator class with other settings, and deliberately not
that estimator: a different seed, width and image sample (up to 8,000 training images, not the
metric's split), so that the metric still measures with a network G never saw. Both learn the
same task from the same data, though, so a lower `pose_err` after training with this loss should
be confirmed by measures that do not read pose with a CNN (the photo-editing benchmark's novel
views against ground-truth renders). The reader is written to the run directory
(`pose-reader.pt`, weights only), so a resumed run pays the same loss.
"""

from __future__ import annotations

import os

import numpy as np
import torch

import dnnlib
from metrics import pose_error
from metrics import probe
from raycond import camera as cam

FILE_NAME = 'pose-reader.pt'
CONFIG = dict(input_res=32, channels=(32, 64, 96), steps=1500, batch_size=64, max_images=8000, seed=1, version=1)


def build(config: dict) -> pose_error.PoseEstimator:
    """An untrained reader of `config`'s shape (saved weights load into it)."""
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
    state = _load_matching(path, config) if rank == 0 else None
    if rank == 0 and state is None:
        previous = os.path.join(os.path.dirname(resume_pkl), FILE_NAME) if _is_local(resume_pkl) else None
        state = _load_matching(previous, config) if previous is not None else None
        if state is not None:
            print(f'Pose reader for --pose-loss: {previous}')
        else:
            print(f'Training the pose reader for --pose-loss on {min(len(training_set), config["max_images"])} '
                  f'real images ({config["steps"]} steps)...')
            model = train_reader(training_set, config, device='cpu')
            state = dict(model={k: v.cpu() for k, v in model.state_dict().items()}, config=_jsonable(config))
        dnnlib.util.atomic_write(path, lambda f: torch.save(state, f))
    if num_gpus > 1:
        torch.distributed.barrier()
        if rank != 0:  # rank 0 may have written it just now
            state = torch.load(path, map_location='cpu', weights_only=True)
    model = build(config)
    model.load_state_dict(state['model'])
    return model.eval().requires_grad_(False).to(device)


def _is_local(path: str | None) -> bool:
    return bool(path) and not dnnlib.util.is_url(path) and os.path.isfile(path)


def _jsonable(config: dict) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in config.items()}


def _load_matching(path: str, config: dict) -> dict | None:
    """The state saved at `path` when it holds a reader made with `config`, else None (a missing,
    damaged, older or other reader is made again)."""
    if not os.path.isfile(path):
        return None
    try:
        state = torch.load(path, map_location='cpu', weights_only=True)
    except Exception:  # a damaged file is simply made again
        return None
    return state if state.get('config') == _jsonable(config) else None

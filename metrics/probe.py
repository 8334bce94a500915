"""Small CNN probes trained once on a dataset's real images, and their disk cache.

Some metrics need a network that reads a known property off an image: the camera (`pose_err`),
the generative factors of synthetic heads (`attr_tv`, `kid_synth`). No pretrained detector knows
these, and this project has to run offline, so each metric trains a small CNN on the dataset's own
labelled images (a few thousand images at 32², tens of seconds on one CPU core), measures it on a
held-out split (the metric's floor), and caches the weights plus whatever the metric wants to keep
under dnnlib's 'gan-metrics' folder, keyed by the dataset file and the probe's configuration.
"""

from __future__ import annotations

import hashlib
import math
import os

import numpy as np
import torch
import torch.nn.functional as F

import dnnlib
from metrics import metric_utils


def preprocess_images(images, res) -> torch.Tensor:
    """Images (N, C, H, W) in 0..255 → float in [-1, 1] at res², 3 channels (area-downsampled)."""
    x = images.float()
    if x.shape[1] == 1:
        x = x.repeat([1, 3, 1, 1])
    if x.shape[2] != res or x.shape[3] != res:
        if x.shape[2] > res:
            x = F.interpolate(x, size=(res, res), mode='area')
        else:
            x = F.interpolate(x, size=(res, res), mode='bilinear', align_corners=False)
    return x / 127.5 - 1


class ConvProbe(torch.nn.Module):
    """uint8/float images (N, C, H, W) in 0..255 → (N, out_dim) raw outputs.

    One stride-2 conv per level (cheap enough to train on a CPU), then an MLP whose hidden layer
    (`embed`) doubles as a feature vector."""

    def __init__(self, input_res=32, channels=(24, 48, 64), hidden=128, out_dim=2):
        super().__init__()
        self.input_res = int(input_res)
        num_down = max(1, min(len(channels), int(math.log2(self.input_res)) - 2))
        layers, c_in = [torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.SiLU()], 16
        for c_out in channels[:num_down]:
            layers += [torch.nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), torch.nn.SiLU()]
            c_in = c_out
        self.features = torch.nn.Sequential(*layers)
        side = self.input_res >> num_down
        self.head = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(c_in * side * side, hidden),
                                        torch.nn.SiLU(), torch.nn.Linear(hidden, out_dim))

    def preprocess(self, images) -> torch.Tensor:
        return preprocess_images(images, self.input_res)

    def forward_normalized(self, x):
        """Preprocessed input → raw outputs."""
        return self.head(self.features(x))

    def embed_normalized(self, x):
        """Preprocessed input → the hidden layer's activations (N, hidden)."""
        return self.head[:3](self.features(x))

    def forward(self, images):
        return self.forward_normalized(self.preprocess(images))


def split_indices(num_images, holdout_frac=0.1, max_train=4000, max_holdout=1000, seed=0, what='this metric'):
    """Deterministic (train, held-out) index arrays of a dataset's images."""
    if num_images < 10:
        raise ValueError(f'{what} needs at least 10 labelled real images, the dataset has {num_images}')
    perm = np.random.RandomState(seed).permutation(num_images)
    num_holdout = int(np.clip(round(num_images * holdout_frac), 2, max_holdout))
    return np.sort(perm[num_holdout:num_holdout + max_train]), np.sort(perm[:num_holdout])


def load_real_images(dataset, indices, input_res, batch=256):
    """Selected dataset items as (uint8 images resized to input_res, raw labels (N, label_dim))."""
    images, labels = [], []
    for start in range(0, len(indices), batch):
        items = [dataset[int(i)] for i in indices[start:start + batch]]
        x = torch.from_numpy(np.stack([it[0] for it in items]))
        x = ((preprocess_images(x, input_res) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
        images.append(x)
        labels.append(np.stack([np.asarray(it[1], dtype=np.float32).reshape(-1) for it in items]))
    if not images:
        return torch.zeros([0, 3, input_res, input_res], dtype=torch.uint8), np.zeros([0, 0], np.float32)
    return torch.cat(images), np.concatenate(labels)


def probe_dataset_kwargs(dataset_kwargs):
    """The dataset as a probe sees it: every labelled image, no flips."""
    kwargs = dnnlib.EasyDict(dataset_kwargs)
    kwargs.update(use_labels=True, xflip=False, max_size=None)
    return kwargs


def cached_probe(opts, kind: str, dataset, dataset_kwargs, config: dict, build, train):
    """The probe of `kind` for this dataset and config: loaded from the cache, or trained now.

    build() → an untrained module (the shape the cached weights fit); train() → (module, extra)
    where `extra` is a dict of tensors/numbers/lists the metric keeps beside the weights (its
    floor, real-image statistics). Rank 0 trains first while the other ranks wait, then they load
    its file. Returns (module in eval mode on opts.device, extra)."""
    cache_file = None
    if opts.cache:
        key = (repr(sorted(dict(dataset_kwargs).items())) + metric_utils.file_fingerprint(dataset_kwargs.get('path'))
               + repr(sorted(config.items())))
        cache_file = dnnlib.util.make_cache_dir_path(
            'gan-metrics', f'{dataset.name}-{kind}-{hashlib.md5(key.encode()).hexdigest()}.pt')
        if opts.rank != 0:
            metric_utils.barrier(opts.num_gpus)  # rank 0 trains (or loads) first
        if os.path.isfile(cache_file):
            state = torch.load(cache_file, map_location='cpu', weights_only=True)
            model = build()
            model.load_state_dict(state['model'])
            if opts.rank == 0:
                metric_utils.barrier(opts.num_gpus)
            return model.eval().requires_grad_(False).to(opts.device), state['extra']

    model, extra = train()
    model = model.eval().requires_grad_(False).to(opts.device)
    if cache_file is not None and opts.rank == 0:
        state = dict(model={k: v.cpu() for k, v in model.state_dict().items()}, extra=extra, config=config)
        os.makedirs(os.path.dirname(cache_file) or '.', exist_ok=True)
        dnnlib.util.atomic_write(cache_file, lambda f: torch.save(state, f))
        metric_utils.barrier(opts.num_gpus)
    return model, extra


def fit(model, images, loss_fn, steps, batch_size, lr, seed=0, device='cpu', progress=None, flip=None):
    """Adam + one-cycle training of `model` on uint8 images (N, C, r, r).

    loss_fn(outputs, idx, flipped) gives the loss of the batch `idx` (flipped: bool (B,) of the
    images that were mirrored); `flip` = True mirrors half of each batch (augmentation)."""
    device = torch.device(device)
    model = model.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
    g = torch.Generator().manual_seed(seed)
    images = images.to(device)
    model.train()
    for step in range(steps):
        idx = torch.randint(images.shape[0], [min(batch_size, images.shape[0])], generator=g)
        x = model.preprocess(images[idx.to(device)])
        flipped = torch.rand([x.shape[0]], generator=g) < 0.5 if flip else torch.zeros(x.shape[0], dtype=torch.bool)
        x = torch.where(flipped.to(device)[:, None, None, None], x.flip(3), x)
        loss = loss_fn(model.forward_normalized(x), idx, flipped)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if progress is not None:
            progress.update(step + 1)
    if progress is not None:
        progress.close()
    return model.eval().requires_grad_(False)


def seeded_init(build, seed):
    """build() with torch's global RNG seeded (and restored afterwards): the same weights every time."""
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        return build()
    finally:
        torch.random.set_rng_state(state)

"""Small CNN probes trained on a dataset's real images: the frozen readers that loss terms pay
against (a camera reader, an attribute classifier) and that metrics measure with.

No pretrained network reads a camera or a synthetic head's hair style, and this project runs
offline, so each probe is a small CNN trained on the dataset's own labelled images (a few thousand
at 32², tens of seconds on one CPU core). A loss term keeps its probe in the run directory
(`load_or_train_in_run`), so a resumed run pays the same loss; metrics cache theirs
(metrics/probe.py).
"""

from __future__ import annotations

import math
import os

import numpy as np
import torch
import torch.nn.functional as F

import dnnlib


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

# ----------------------------------------------------------------------------- kept in the run directory


def _jsonable(config: dict) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in config.items()}


def _load_matching(path: str | None, config: dict) -> dict | None:
    """The state saved at `path` when it holds a probe made with `config`, else None (a missing,
    damaged, older or other probe is made again)."""
    if not path or not os.path.isfile(path):
        return None
    try:
        state = torch.load(path, map_location='cpu', weights_only=True)
    except Exception:  # a damaged file is simply made again
        return None
    return state if state.get('config') == _jsonable(config) else None


def load_or_train_in_run(run_dir: str, file_name: str, config: dict, build, train, what: str, device='cpu',
                         rank: int = 0, num_gpus: int = 1, resume_pkl: str | None = None):
    """A frozen probe kept as `run_dir/file_name`, in eval mode on `device`, and its extras.

    Loaded from the run directory; else copied from beside a local `resume_pkl` (a resumed run
    keeps the probe it was trained with); else rank 0 calls train() → (module, extra dict of
    tensors/numbers) and saves it there while the other ranks wait and load it. build() makes an
    untrained module that the saved weights fit; `what` names the probe in the messages."""
    path = os.path.join(run_dir, file_name)
    state = _load_matching(path, config) if rank == 0 else None
    if rank == 0 and state is None:
        local = bool(resume_pkl) and not dnnlib.util.is_url(resume_pkl) and os.path.isfile(resume_pkl)
        previous = os.path.join(os.path.dirname(resume_pkl), file_name) if local else None
        state = _load_matching(previous, config)
        if state is not None:
            print(f'{what}: {previous}')
        else:
            model, extra = train()
            state = dict(model={k: v.cpu() for k, v in model.state_dict().items()}, config=_jsonable(config),
                         extra=extra)
        dnnlib.util.atomic_write(path, lambda f: torch.save(state, f))
    if num_gpus > 1:
        torch.distributed.barrier()
        if rank != 0:  # rank 0 may have written it just now
            state = torch.load(path, map_location='cpu', weights_only=True)
    model = build()
    model.load_state_dict(state['model'])
    return model.eval().requires_grad_(False).to(device), state.get('extra', {})

"""The attribute classifier of synthetic heads: hair style, skin tone, hair colour and background,
read off an image by a small CNN trained on the generative factors that `raycond/synth` stores per
image (or that can be redrawn from the dataset's seed).

The `attr-mix` term pays against one (seed 2); the `attr_tv` and `kid_synth` metrics measure with
another (metrics/synth_coverage.py, seed 0), so that the metric reads with a network G was never
trained against.
"""

from __future__ import annotations

import io
import json
import os
import zipfile

import numpy as np
import torch
import torch.nn.functional as F

import dnnlib
from raycond import camera as cam
from raycond.synth import factors as synth_factors
from training.terms import probes

ATTRIBUTES = synth_factors.ATTRIBUTES
NAMES = tuple(ATTRIBUTES)
SIZES = tuple(len(v) for v in ATTRIBUTES.values())


def _read_dataset_json(path) -> dict | None:
    """dataset.json of a ZIP or folder dataset (None if it has none)."""
    path = os.path.expanduser(str(path))
    try:
        if os.path.isdir(path):
            with open(os.path.join(path, 'dataset.json'), 'rb') as f:
                return json.load(f)
        with zipfile.ZipFile(path) as zf:
            return json.load(io.BytesIO(zf.read('dataset.json')))
    except (FileNotFoundError, KeyError):
        return None


def _all_labels(dataset_kwargs) -> np.ndarray:
    """Every label (N, label_dim) of the dataset described by `dataset_kwargs`, without flips."""
    dataset = dnnlib.util.construct_class_by_name(**probes.probe_dataset_kwargs(dataset_kwargs))
    try:
        return np.stack([dataset.get_label(i) for i in range(len(dataset))]).astype(np.float32).reshape(len(dataset), -1)
    finally:
        dataset.close()


def attribute_targets(dataset, dataset_kwargs) -> tuple[np.ndarray, str]:
    """(N, num attributes) int64 classes of the dataset's images in index order (IGNORE where not
    visible), and where they came from ('stored' or 'rederived from seed S')."""
    path = dataset_kwargs.get('path')
    meta = _read_dataset_json(path) or {}
    fnames = getattr(dataset, '_image_fnames', None)
    records, source = None, None
    stored = meta.get('synth_params')
    if stored is not None and fnames is not None:
        by_path = {str(k).replace('\\', '/'): v for k, v in stored}
        missing = [f for f in fnames if f not in by_path]
        if missing:
            raise ValueError(f'dataset.json of {path} has no "synth_params" entry for {len(missing)} images '
                             f'(first: {missing[0]}); re-render it with dataset_tool.py synth')
        records, source = [by_path[f] for f in fnames], 'stored'
    else:
        labels = _all_labels(dataset_kwargs)
        synth = meta.get('synth') or {}
        seeds = [int(synth['seed'])] if 'seed' in synth else range(32)
        if labels.shape[1] == cam.LABEL_DIM:
            records, seed = synth_factors.rederive_factors(labels, seeds=seeds, pose=synth or None)
            source = f'rederived from seed {seed}'
    if records is None:
        raise ValueError(f'attr_tv/kid_synth need a synthetic-heads dataset from dataset_tool.py synth; {path} has no '
                         f'"synth_params" in its dataset.json and its camera labels do not match seeds 0-31 with the '
                         f'default pose options (render one with: python dataset_tool.py synth --dest=DEST.zip)')
    classes = synth_factors.attribute_classes(records)
    return np.stack([classes[name] for name in NAMES], axis=1), source


class AttributeClassifier(probes.ConvProbe):
    """uint8/float images (N, C, H, W) in 0..255 → concatenated logits of every attribute."""

    def __init__(self, input_res=32, channels=(24, 48, 64), hidden=128):
        super().__init__(input_res=input_res, channels=channels, hidden=hidden, out_dim=sum(SIZES))

    def logits_from_features(self, feats) -> torch.Tensor:
        """Hidden features (N, hidden), as `predict` returns them → concatenated logits."""
        return self.head[3](feats)

    def predict(self, images) -> tuple[torch.Tensor, torch.Tensor]:
        """(classes (N, num attributes) int64, hidden features (N, hidden))."""
        x = self.preprocess(images)
        feats = self.embed_normalized(x)
        logits = self.logits_from_features(feats)
        classes = torch.stack([part.argmax(dim=1) for part in logits.split(SIZES, dim=1)], dim=1)
        return classes, feats


def attribute_loss(logits, targets) -> torch.Tensor:
    """Sum over attributes of the cross-entropy (classes equal to IGNORE do not count)."""
    loss = logits.new_zeros([])
    for i, part in enumerate(logits.split(SIZES, dim=1)):
        t = targets[:, i]
        if bool((t != synth_factors.IGNORE).any()):
            loss = loss + F.cross_entropy(part, t, ignore_index=synth_factors.IGNORE)
    return loss


def predict_all(model, images, batch=256) -> tuple[np.ndarray, np.ndarray]:
    """Predicted classes and hidden features of uint8 images, in batches."""
    dev = next(model.parameters()).device
    classes, feats = [], []
    with torch.no_grad():
        for start in range(0, images.shape[0], batch):
            c, f = model.predict(images[start:start + batch].to(dev))
            classes.append(c.cpu())
            feats.append(f.cpu())
    return torch.cat(classes).numpy(), torch.cat(feats).numpy()


def train_classifier(dataset, dataset_kwargs, res, steps=2000, batch_size=64, max_train=4000, max_ref=5000, seed=0,
                     channels=(24, 48, 64), device='cpu', progress=None):
    """Train a classifier on 60 % of the dataset (at most `max_train` images); returns it and what
    its users keep beside it: held-out accuracy per attribute, the held-out images' predicted
    classes and hidden features, and where the labels came from."""
    targets, source = attribute_targets(dataset, dataset_kwargs)
    train_idx, ref_idx = probes.split_indices(len(dataset), holdout_frac=0.4, max_train=max_train,
                                              max_holdout=max_ref, seed=seed, what='attr_tv')
    train_images, _ = probes.load_real_images(dataset, train_idx, res)
    ref_images, _ = probes.load_real_images(dataset, ref_idx, res)
    train_targets = torch.from_numpy(targets[train_idx])
    model = probes.seeded_init(lambda: AttributeClassifier(input_res=res, channels=channels), seed)
    model = probes.fit(model, train_images, lambda out, idx, _flipped: attribute_loss(out, train_targets[idx].to(out.device)),
                       steps, batch_size, lr=2e-3, seed=seed, device=device, progress=progress, flip=True)
    ref_pred, ref_feats = predict_all(model, ref_images)
    ref_true = targets[ref_idx]
    accuracy = {}
    for i, name in enumerate(NAMES):
        seen = ref_true[:, i] != synth_factors.IGNORE
        accuracy[name] = float((ref_pred[seen, i] == ref_true[seen, i]).mean()) if seen.any() else float('nan')
    return model, dict(accuracy=accuracy, source=source, ref_pred=torch.from_numpy(ref_pred),
                       ref_features=torch.from_numpy(ref_feats))

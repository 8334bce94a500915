"""Mode coverage on synthetic heads (`attr_tv`, `kid_synth`): does the generator draw hair styles,
skin tones, hair colours and backgrounds as often as the data does?

The procedural heads of `raycond/synth` have known generative factors (stored per image in
dataset.json, or redrawn from the seed: raycond.synth.factors). A small CNN (metrics/probe.py, one
trunk and one softmax head per attribute, 32² input) learns to read the attributes off the real
images; it trains once per dataset and is cached like the pose estimator. Its accuracy on real
images it did not train on is the floor: an attribute it cannot read cannot be compared.

`attr_tv`: the classifier labels `num_gen` generated images (at cameras drawn from the dataset's
labels) and the held-out real images; per attribute, the total-variation distance
½·Σ|p_gen − p_real| between the two predicted-class histograms (0: same frequencies, 1: disjoint).
Comparing predictions with predictions cancels most of the classifier's own confusions. The
overall `attr_tv` is the mean over attributes; `attr_tv_sampling_floor` is what a perfect
generator would score with this many samples (real predictions resampled).

`kid_synth`: KID (unbiased polynomial-kernel MMD², as in metrics/kernel_inception_distance.py) on
the classifier's hidden-layer features, centred and scaled by the real images' mean and spread. It is not Inception KID and its values are not comparable
with published KIDs; it exists because Inception cannot be downloaded on offline machines, and it
is blind to what the classifier was not trained to see.
"""

from __future__ import annotations

import io
import json
import os
import zipfile

import numpy as np
import torch
import torch.nn.functional as F

from metrics import kernel_inception_distance
from metrics import metric_utils
from metrics import probe
from raycond import camera as cam
from raycond.synth import factors as synth_factors

ATTRIBUTES = synth_factors.ATTRIBUTES
NAMES = tuple(ATTRIBUTES)
SIZES = tuple(len(v) for v in ATTRIBUTES.values())

# ----------------------------------------------------------------------------- labels


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
        labels = metric_utils.dataset_labels(probe.probe_dataset_kwargs(dataset_kwargs))
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


def total_variation(p, q) -> float:
    """½·Σ|p − q| of two histograms (normalized here)."""
    p = np.asarray(p, np.float64)
    q = np.asarray(q, np.float64)
    return float(0.5 * np.abs(p / max(p.sum(), 1e-12) - q / max(q.sum(), 1e-12)).sum())


def histograms(pred: np.ndarray) -> list[np.ndarray]:
    """(N, num attributes) predicted classes → one count histogram per attribute."""
    return [np.bincount(pred[:, i], minlength=n).astype(np.float64) for i, n in enumerate(SIZES)]

# ----------------------------------------------------------------------------- classifier


class AttributeClassifier(probe.ConvProbe):
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
    dev = next(model.parameters()).device
    classes, feats = [], []
    with torch.no_grad():
        for start in range(0, images.shape[0], batch):
            c, f = model.predict(images[start:start + batch].to(dev))
            classes.append(c.cpu())
            feats.append(f.cpu())
    return torch.cat(classes).numpy(), torch.cat(feats).numpy()


def get_attribute_classifier(opts, input_res=32, steps=2000, batch_size=64, max_train=4000, max_ref=5000, seed=0,
                             channels=(24, 48, 64)):
    """The dataset's attribute classifier (trained now, or loaded from the cache) and what the
    metrics keep beside it: held-out accuracy per attribute, the held-out real images' predicted
    classes and features, and where the labels came from."""
    kwargs = probe.probe_dataset_kwargs(opts.dataset_kwargs)
    dataset = metric_utils.make_dataset(kwargs)
    res = int(min(input_res, dataset.resolution))
    config = dict(input_res=res, steps=steps, batch_size=batch_size, max_train=max_train, max_ref=max_ref,
                  seed=seed, channels=list(channels), version=1)

    def train():
        targets, source = attribute_targets(dataset, kwargs)
        train_idx, ref_idx = probe.split_indices(len(dataset), holdout_frac=0.4, max_train=max_train,
                                                 max_holdout=max_ref, seed=seed, what='attr_tv')
        train_images, _ = probe.load_real_images(dataset, train_idx, res)
        ref_images, _ = probe.load_real_images(dataset, ref_idx, res)
        train_targets = torch.from_numpy(targets[train_idx])
        model = probe.seeded_init(lambda: AttributeClassifier(input_res=res, channels=channels), seed)
        progress = opts.progress.sub(tag='attribute classifier', num_items=steps, unit='step')
        model = probe.fit(model, train_images, lambda out, idx, _flipped: attribute_loss(out, train_targets[idx].to(out.device)),
                          steps, batch_size, lr=2e-3, seed=seed, device=opts.device, progress=progress, flip=True)
        ref_pred, ref_feats = predict_all(model, ref_images)
        ref_true = targets[ref_idx]
        accuracy = {}
        for i, name in enumerate(NAMES):
            seen = ref_true[:, i] != synth_factors.IGNORE
            accuracy[name] = float((ref_pred[seen, i] == ref_true[seen, i]).mean()) if seen.any() else float('nan')
        extra = dict(accuracy=accuracy, source=source, ref_pred=torch.from_numpy(ref_pred),
                     ref_features=torch.from_numpy(ref_feats))
        return model, extra

    return probe.cached_probe(opts, 'attr-classifier', dataset, kwargs, config,
                              build=lambda: AttributeClassifier(input_res=res, channels=channels), train=train)

# ----------------------------------------------------------------------------- the metrics


def generated_predictions(opts, model, num_gen, batch_size=64) -> tuple[np.ndarray, np.ndarray]:
    """Predicted classes and features of `num_gen` generated images (all ranks' images, rank order
    interleaved), at cameras drawn from the dataset's labels."""
    G = metric_utils.prepare_generator(opts)
    sample_c = metric_utils.LabelSampler(opts, G.c_dim, salt=5)
    zgen = opts.torch_generator(salt=5)
    per_rank = (num_gen + opts.num_gpus - 1) // opts.num_gpus
    classes = metric_utils.FeatureStats(capture_all=True, max_items=num_gen)
    feats = metric_utils.FeatureStats(capture_all=True, max_items=num_gen)
    progress = opts.progress.sub(tag='attribute generation', num_items=num_gen)
    done = 0
    while done < per_rank:
        n = min(batch_size, per_rank - done)
        z = torch.randn([n, G.z_dim], generator=zgen).to(opts.device)
        with torch.no_grad():
            img = metric_utils.generate_uint8(G, z, sample_c(n), opts.G_kwargs)
            c, f = model.predict(img)
        classes.append_torch(c.float(), num_gpus=opts.num_gpus, rank=opts.rank)
        feats.append_torch(f, num_gpus=opts.num_gpus, rank=opts.rank)
        done += n
        progress.update(classes.num_items)
    progress.close()
    return classes.get_all().round().astype(np.int64), feats.get_all()


def sampling_floor(ref_pred, num_gen, draws=20, seed=0) -> float:
    """Mean attr_tv of `num_gen` real predictions drawn with replacement against all of them: what
    a generator that matches the data exactly would score with this many samples."""
    rng = np.random.RandomState(seed)
    ref_hist = histograms(ref_pred)
    tvs = []
    for _ in range(draws):
        sample = ref_pred[rng.randint(len(ref_pred), size=num_gen)]
        tvs.append(np.mean([total_variation(h, r) for h, r in zip(histograms(sample), ref_hist)]))
    return float(np.mean(tvs))


def compute_attr_tv(opts, num_gen, batch_size=64, **classifier_kwargs) -> dict:
    """attr_tv (mean over attributes), attr_tv_<attribute>, the classifier's held-out accuracy per
    attribute (attr_acc_<attribute>: the floor) and attr_tv_sampling_floor."""
    model, extra = get_attribute_classifier(opts, **classifier_kwargs)
    gen_pred, _ = generated_predictions(opts, model, num_gen, batch_size)
    ref_pred = np.asarray(extra['ref_pred'])
    results = {}
    for i, (gen_h, ref_h) in enumerate(zip(histograms(gen_pred), histograms(ref_pred))):
        results[f'attr_tv_{NAMES[i]}'] = total_variation(gen_h, ref_h)
    results = dict(attr_tv=float(np.mean(list(results.values()))), **results)
    results['attr_tv_sampling_floor'] = sampling_floor(ref_pred, num_gen)
    for name in NAMES:
        results[f'attr_acc_{name}'] = extra['accuracy'][name]
    return results


def compute_kid_synth(opts, num_gen, batch_size=64, num_subsets=100, max_subset_size=1000,
                      **classifier_kwargs) -> float:
    """KID between the attribute classifier's features of generated and held-out real images."""
    model, extra = get_attribute_classifier(opts, **classifier_kwargs)
    _, gen_feats = generated_predictions(opts, model, num_gen, batch_size)
    if opts.rank != 0:
        return float('nan')
    # Centre on the real features and divide by their overall spread (one scale for all features,
    # so that nearly constant ones are not blown up): the cubic kernel is not scale invariant, and
    # raw hidden activations put KID in the thousands.
    real = np.asarray(extra['ref_features'], np.float64)
    mean = real.mean(axis=0)
    scale = float(np.sqrt(real.var(axis=0).mean())) + 1e-8
    return kernel_inception_distance.kid_from_features((real - mean) / scale, (gen_feats - mean) / scale,
                                                       num_subsets, max_subset_size, rng=opts.numpy_rng(6))

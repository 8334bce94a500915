"""Mode coverage on synthetic heads (`attr_tv`, `kid_synth`): does the generator draw hair styles,
skin tones, hair colours and backgrounds as often as the data does?

A small attribute classifier (training/terms/attribute_classifier.py), trained once per dataset on
the factors `raycond/synth` stores per image and cached, labels generated and held-out real images;
its held-out accuracy is the floor. `attr_tv`: per attribute, the total variation ½·Σ|p_gen − p_real|
between the two predicted-class histograms (mean over attributes; `attr_tv_sampling_floor` is what a
perfect generator scores with this many samples). `kid_synth`: KID on the classifier's hidden
features, for machines where Inception cannot be downloaded; not comparable with Inception KID.
"""

from __future__ import annotations

import numpy as np
import torch

from metrics import kernel_inception_distance
from metrics import metric_utils
from metrics import probe
from training.terms import attribute_classifier as attrs
from training.terms import probes

NAMES = attrs.NAMES
SIZES = attrs.SIZES
attribute_targets = attrs.attribute_targets  # the classes of the real images (shared with the attr-mix term)


def total_variation(p, q) -> float:
    """½·Σ|p − q| of two histograms (normalized here)."""
    p = np.asarray(p, np.float64)
    q = np.asarray(q, np.float64)
    return float(0.5 * np.abs(p / max(p.sum(), 1e-12) - q / max(q.sum(), 1e-12)).sum())


def histograms(pred: np.ndarray) -> list[np.ndarray]:
    """(N, num attributes) predicted classes → one count histogram per attribute."""
    return [np.bincount(pred[:, i], minlength=n).astype(np.float64) for i, n in enumerate(SIZES)]

# ----------------------------------------------------------------------------- classifier


def get_attribute_classifier(opts, input_res=32, steps=2000, batch_size=64, max_train=4000, max_ref=5000, seed=0,
                             channels=(24, 48, 64)):
    """The dataset's attribute classifier (trained now, or loaded from the cache) and what the
    metrics keep beside it: held-out accuracy per attribute, the held-out real images' predicted
    classes and features, and where the labels came from."""
    kwargs = probes.probe_dataset_kwargs(opts.dataset_kwargs)
    dataset = metric_utils.make_dataset(kwargs)
    res = int(min(input_res, dataset.resolution))
    config = dict(input_res=res, steps=steps, batch_size=batch_size, max_train=max_train, max_ref=max_ref,
                  seed=seed, channels=list(channels), version=1)

    def train():
        progress = opts.progress.sub(tag='attribute classifier', num_items=steps, unit='step')
        return attrs.train_classifier(dataset, kwargs, res, steps=steps, batch_size=batch_size, max_train=max_train,
                                      max_ref=max_ref, seed=seed, channels=channels, device=opts.device,
                                      progress=progress)

    return probe.cached_probe(opts, 'attr-classifier', dataset, kwargs, config,
                              build=lambda: attrs.AttributeClassifier(input_res=res, channels=channels), train=train)

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

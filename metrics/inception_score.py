"""Inception Score (Salimans et al. 2016): exp(E_x KL(p(y|x) ‖ p(y))) from Inception-v3 class
probabilities of generated images, mean and std over splits (StyleGAN2-ADA's is50k)."""

from __future__ import annotations

import numpy as np

from metrics import metric_utils


def inception_score_from_probs(probs, num_splits=10):
    """(mean, std) of the score over `num_splits` contiguous splits of (N, classes) probabilities."""
    probs = np.asarray(probs, np.float64)
    n = probs.shape[0]
    if n < num_splits:
        raise ValueError(f'inception score needs at least {num_splits} samples, got {n}')
    scores = []
    for i in range(num_splits):
        part = probs[i * n // num_splits:(i + 1) * n // num_splits]
        marginal = part.mean(axis=0, keepdims=True)
        with np.errstate(divide='ignore', invalid='ignore'):
            kl = np.where(part > 0, part * (np.log(part) - np.log(marginal)), 0.0)
        scores.append(np.exp(kl.sum(axis=1).mean()))
    return float(np.mean(scores)), float(np.std(scores))


def compute_is(opts, num_gen, num_splits):
    """Inception score of `num_gen` images of opts.G."""
    detector_url = metric_utils.inception_url()
    # Softmax without the output bias, as the original TensorFlow implementation did.
    detector_kwargs = dict(return_features=False, no_output_bias=True)

    gen_probs = metric_utils.compute_feature_stats_for_generator(
        opts=opts, detector_url=detector_url, detector_kwargs=detector_kwargs,
        capture_all=True, max_items=num_gen).get_all()
    if opts.rank != 0:
        return float('nan'), float('nan')
    return inception_score_from_probs(gen_probs, num_splits)

"""Kernel Inception Distance (Bińkowski et al. 2018): an unbiased estimate of the squared MMD
between Inception features of real and generated images under the cubic polynomial kernel
k(x, y) = (xᵀy / d + 1)³, averaged over random subsets. Matches StyleGAN2-ADA's kid50k(_full)."""

from __future__ import annotations

import numpy as np

from metrics import metric_utils


def kid_from_features(real_features, gen_features, num_subsets=100, max_subset_size=1000, rng=None) -> float:
    """Mean over `num_subsets` subsets of m = min(N_real, N_gen, max_subset_size) samples of the
    unbiased MMD² estimate (off-diagonal within-set kernel means minus twice the cross mean)."""
    real = np.asarray(real_features, np.float64)
    gen = np.asarray(gen_features, np.float64)
    rng = np.random if rng is None else rng
    n = real.shape[1]
    m = min(real.shape[0], gen.shape[0], max_subset_size)
    if m < 2:
        raise ValueError(f'KID needs at least 2 real and 2 generated samples, got {real.shape[0]} and {gen.shape[0]}')
    total = 0.0
    for _ in range(num_subsets):
        x = gen[rng.choice(gen.shape[0], m, replace=False)]
        y = real[rng.choice(real.shape[0], m, replace=False)]
        kxx = (x @ x.T / n + 1) ** 3
        kyy = (y @ y.T / n + 1) ** 3
        kxy = (x @ y.T / n + 1) ** 3
        within = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        total += within - 2 * kxy.mean()
    return float(total / num_subsets)


def compute_kid(opts, max_real, num_gen, num_subsets, max_subset_size) -> float:
    """KID of opts.G against up to `max_real` dataset images (None = all)."""
    real_features, gen_features = metric_utils.all_features(opts, metric_utils.inception_url(), max_real, num_gen)
    if opts.rank != 0:
        return float('nan')
    return kid_from_features(real_features, gen_features, num_subsets, max_subset_size, rng=opts.numpy_rng(3))

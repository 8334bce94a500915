"""Fréchet Inception Distance (Heusel et al. 2017): the Fréchet distance between Gaussians fitted
to Inception-v3 pool features of real and generated images. Matches StyleGAN2-ADA's fid50k(_full)."""

from __future__ import annotations

import numpy as np
import scipy.linalg

from metrics import metric_utils


def fid_from_stats(mu_a, sigma_a, mu_b, sigma_b) -> float:
    """‖μa − μb‖² + Tr(Σa + Σb − 2 (Σa Σb)^½)."""
    mu_a, mu_b = np.asarray(mu_a, np.float64), np.asarray(mu_b, np.float64)
    sigma_a, sigma_b = np.asarray(sigma_a, np.float64), np.asarray(sigma_b, np.float64)
    m = np.square(mu_a - mu_b).sum()
    s = scipy.linalg.sqrtm(np.dot(sigma_a, sigma_b))
    return float(np.real(m + np.trace(sigma_a + sigma_b - s * 2)))


def fid_from_features(feat_a, feat_b) -> float:
    """FID between two (N, F) feature arrays (biased 1/N covariances, as the metric uses)."""
    def mean_cov(x):
        x = np.asarray(x, np.float64)
        mu = x.mean(0)
        return mu, (x - mu).T @ (x - mu) / x.shape[0]
    return fid_from_stats(*mean_cov(feat_a), *mean_cov(feat_b))


def compute_fid(opts, max_real, num_gen) -> float:
    """FID of opts.G against up to `max_real` dataset images (None = all), `num_gen` generated."""
    detector_url = metric_utils.inception_url()
    detector_kwargs = dict(return_features=True)  # 2048-d pool3 features

    mu_real, sigma_real = metric_utils.compute_feature_stats_for_dataset(
        opts=opts, detector_url=detector_url, detector_kwargs=detector_kwargs,
        rel_lo=0, rel_hi=0, capture_mean_cov=True, max_items=max_real).get_mean_cov()
    mu_gen, sigma_gen = metric_utils.compute_feature_stats_for_generator(
        opts=opts, detector_url=detector_url, detector_kwargs=detector_kwargs,
        rel_lo=0, rel_hi=1, capture_mean_cov=True, max_items=num_gen).get_mean_cov()
    if opts.rank != 0:
        return float('nan')
    return fid_from_stats(mu_gen, sigma_gen, mu_real, sigma_real)

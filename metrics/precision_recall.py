"""Improved precision and recall (Kynkäänniemi et al. 2019): each feature set spans a manifold made
of balls reaching each sample's k-th nearest neighbour; precision is the fraction of generated
samples inside the real manifold, recall the fraction of real samples inside the generated one.
Features are VGG16's, as in StyleGAN2-ADA's pr50k3(_full)."""

from __future__ import annotations

import torch

from metrics import metric_utils


def _split_rows(n, num_gpus, rank):
    """Row indices of this rank, padded (by repeating the last) so every rank has the same count."""
    rows = list(range(rank, n, num_gpus))
    per_rank = (n + num_gpus - 1) // num_gpus
    rows += [rows[-1] if rows else 0] * (per_rank - len(rows))
    return torch.as_tensor(rows, dtype=torch.long)


def _gather_rows(values, n, num_gpus):
    """Inverse of _split_rows: interleave every rank's values back into n rows."""
    return metric_utils.gather_interleaved(values, num_gpus)[:n]


def _kth_distances(manifold, k, batch_size, num_gpus=1, rank=0):
    """Distance from each manifold point to its k-th nearest other point (itself excluded)."""
    rows = _split_rows(manifold.shape[0], num_gpus, rank)
    out = []
    for chunk in rows.split(batch_size):
        dist = torch.cdist(manifold[chunk], manifold)
        out.append(dist.kthvalue(k + 1, dim=1).values)  # +1: the point itself is at distance 0
    return _gather_rows(torch.cat(out), manifold.shape[0], num_gpus)


def _inside(manifold, radii, probes, batch_size, num_gpus=1, rank=0):
    """For each probe: is it within radius of at least one manifold point?"""
    rows = _split_rows(probes.shape[0], num_gpus, rank)
    out = []
    for chunk in rows.split(batch_size):
        dist = torch.cdist(probes[chunk], manifold)
        out.append((dist <= radii[None, :]).any(dim=1).float())
    return _gather_rows(torch.cat(out), probes.shape[0], num_gpus)


def precision_recall_from_features(real_features, gen_features, nhood_size=3, batch_size=10000,
                                   num_gpus=1, rank=0, device='cpu'):
    """(precision, recall) of generated features against real ones."""
    real = torch.as_tensor(real_features, dtype=torch.float32, device=device)
    gen = torch.as_tensor(gen_features, dtype=torch.float32, device=device)
    for name, x in (('real', real), ('generated', gen)):
        if x.shape[0] <= nhood_size:
            raise ValueError(f'precision/recall needs more than {nhood_size} {name} samples, got {x.shape[0]}')
    results = []
    for manifold, probes in ((real, gen), (gen, real)):
        radii = _kth_distances(manifold, nhood_size, batch_size, num_gpus, rank)
        results.append(float(_inside(manifold, radii, probes, batch_size, num_gpus, rank).double().mean()))
    return results[0], results[1]


def compute_pr(opts, max_real, num_gen, nhood_size, row_batch_size, col_batch_size):
    """Precision and recall of opts.G against up to `max_real` dataset images (None = all).
    `col_batch_size` is accepted for StyleGAN2-ADA compatibility (whole columns are used)."""
    del col_batch_size
    real_features, gen_features = metric_utils.all_features(opts, metric_utils.vgg16_url(), max_real, num_gen)
    precision, recall = precision_recall_from_features(real_features, gen_features, nhood_size, row_batch_size,
                                                       opts.num_gpus, opts.rank, opts.device)
    if opts.rank != 0:
        return float('nan'), float('nan')
    return precision, recall

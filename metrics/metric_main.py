"""Registry of quality metrics by name, and the two calls the training loop and calc_metrics.py make:
`calc_metric(name, G=..., dataset_kwargs=..., ...)` and `report_metric(result, run_dir, snapshot_pkl)`
(one JSON line appended to `<run_dir>/metric-<name>.jsonl`). Names follow StyleGAN2-ADA
(fid50k_full, kid50k_full, pr50k3_full, ppl2_wend, is50k, legacy fid50k/kid50k/pr50k3), with small
variants for quick checks (fid5k_full, fid1k_full, fid100_full, ...), `pose_err` (camera control),
`attr_tv`/`kid_synth` (mode coverage on synthetic heads) and StyleGAN3's equivariance metrics.
"""

from __future__ import annotations

import json
import os
import time

import torch

import dnnlib
from metrics import equivariance
from metrics import frechet_inception_distance
from metrics import inception_score
from metrics import kernel_inception_distance
from metrics import metric_utils
from metrics import perceptual_path_length
from metrics import pose_error
from metrics import precision_recall
from metrics import synth_coverage
from raycond import atomic_io

# ----------------------------------------------------------------------------- registry

_metric_dict: dict = {}


def register_metric(fn, name: str | None = None):
    """Register `fn(opts) -> dict of results` under `name` (default: the function's name)."""
    assert callable(fn)
    _metric_dict[name or fn.__name__] = fn
    return fn


def is_valid_metric(metric: str) -> bool:
    return metric in _metric_dict


def list_valid_metrics() -> list[str]:
    return list(_metric_dict.keys())


def parse_metric_list(s: str | None) -> list[str]:
    """'fid50k_full,kid50k_full' → list; 'none' or '' → []; unknown names → ValueError listing the valid ones."""
    if s is None:
        return []
    names = [m.strip() for m in (s.split(',') if isinstance(s, str) else s) if m.strip()]
    if names in (['none'], []):
        return []
    bad = [m for m in names if not is_valid_metric(m)]
    if bad:
        raise ValueError(f'unknown metric(s) {", ".join(bad)}; valid metrics: {", ".join(list_valid_metrics())}')
    return names


def calc_metric(metric: str, **kwargs) -> dnnlib.EasyDict:
    """Compute one metric. kwargs: G, dataset_kwargs, num_gpus=1, rank=0, device, progress=None,
    cache=True, G_kwargs={}, seed=None (see metric_utils.MetricOptions). Every rank must call it;
    all ranks get rank 0's results."""
    if not is_valid_metric(metric):
        raise ValueError(f'unknown metric {metric!r}; valid metrics: {", ".join(list_valid_metrics())}')
    opts = metric_utils.MetricOptions(**kwargs)

    start_time = time.time()
    results = _metric_dict[metric](opts)
    total_time = time.time() - start_time

    for key, value in list(results.items()):
        if opts.num_gpus > 1 and torch.distributed.is_initialized():
            value = torch.as_tensor(value, dtype=torch.float64, device=opts.device)
            torch.distributed.broadcast(tensor=value, src=0)
            value = float(value.cpu())
        results[key] = float(value)

    return dnnlib.EasyDict(
        results=dnnlib.EasyDict(results),
        metric=metric,
        total_time=total_time,
        total_time_str=dnnlib.util.format_time(total_time),
        num_gpus=opts.num_gpus,
        images_per_sec=dict(opts.rates),  # measured speed of each pass; not written to the JSONL file
    )


JSONL_KEYS = ('results', 'metric', 'total_time', 'total_time_str', 'num_gpus')


def report_metric(result_dict, run_dir=None, snapshot_pkl=None, print_line=True) -> str:
    """Print the result as one JSON line and append it to `<run_dir>/metric-<metric>.jsonl`.
    The snapshot path is stored relative to the run directory. Returns the line."""
    metric = result_dict['metric']
    if not is_valid_metric(metric):
        raise ValueError(f'unknown metric {metric!r}')
    if run_dir is not None and snapshot_pkl is not None:
        snapshot_pkl = os.path.relpath(snapshot_pkl, run_dir)
    record = {k: result_dict[k] for k in JSONL_KEYS}
    record['results'] = dict(record['results'])
    record.update(snapshot_pkl=snapshot_pkl, timestamp=time.time())
    line = json.dumps(record)
    if print_line:
        print(line)
    if run_dir is not None and os.path.isdir(run_dir):
        atomic_io.append_line(os.path.join(run_dir, f'metric-{metric}.jsonl'), line)   # whole lines only
    return line

# ----------------------------------------------------------------------------- recommended metrics


def _full(opts):
    """Real statistics over the whole dataset, without mirrored copies."""
    opts.dataset_kwargs.update(max_size=None, xflip=False)


def _fid(name, num_gen, max_real=None, full=True):
    def fn(opts):
        if full:
            _full(opts)
        else:
            opts.dataset_kwargs.update(max_size=None)
        fid = frechet_inception_distance.compute_fid(opts, max_real=max_real, num_gen=num_gen)
        return dict({name: fid})
    fn.__name__ = name
    fn.__doc__ = f'FID: {num_gen} generated images vs {"all" if max_real is None else max_real} real images.'
    return register_metric(fn, name)


def _kid(name, num_gen, max_real=None, full=True, num_subsets=100, max_subset_size=1000):
    def fn(opts):
        if full:
            _full(opts)
        else:
            opts.dataset_kwargs.update(max_size=None)
        kid = kernel_inception_distance.compute_kid(opts, max_real=max_real, num_gen=num_gen,
                                                    num_subsets=num_subsets, max_subset_size=max_subset_size)
        return dict({name: kid})
    fn.__name__ = name
    return register_metric(fn, name)


def _pr(name, num_gen, max_real=None, full=True, nhood_size=3):
    def fn(opts):
        if full:
            _full(opts)
        else:
            opts.dataset_kwargs.update(max_size=None)
        precision, recall = precision_recall.compute_pr(opts, max_real=max_real, num_gen=num_gen,
                                                        nhood_size=nhood_size, row_batch_size=10000,
                                                        col_batch_size=10000)
        return {f'{name}_precision': precision, f'{name}_recall': recall}
    fn.__name__ = name
    return register_metric(fn, name)


def _ppl(name, space, sampling, crop, num_samples=50000, batch_size=2):
    def fn(opts):
        ppl = perceptual_path_length.compute_ppl(opts, num_samples=num_samples, epsilon=1e-4, space=space,
                                                 sampling=sampling, crop=crop, batch_size=batch_size)
        return dict({name: ppl})
    fn.__name__ = name
    return register_metric(fn, name)


def _is(name, num_gen, num_splits=10):
    def fn(opts):
        _full(opts)
        mean, std = inception_score.compute_is(opts, num_gen=num_gen, num_splits=num_splits)
        return {f'{name}_mean': mean, f'{name}_std': std}
    fn.__name__ = name
    return register_metric(fn, name)


def _pose(name, num_gen):
    def fn(opts):
        opts.dataset_kwargs.update(max_size=None)
        return pose_error.compute_pose_err(opts, num_gen=num_gen)
    fn.__name__ = name
    return register_metric(fn, name)


def _attr_tv(name, num_gen):
    def fn(opts):
        opts.dataset_kwargs.update(max_size=None)
        return synth_coverage.compute_attr_tv(opts, num_gen=num_gen)
    fn.__name__ = name
    return register_metric(fn, name)


def _kid_synth(name, num_gen):
    def fn(opts):
        opts.dataset_kwargs.update(max_size=None)
        return {name: synth_coverage.compute_kid_synth(opts, num_gen=num_gen, max_subset_size=min(1000, num_gen))}
    fn.__name__ = name
    return register_metric(fn, name)


def _eq(name, num_samples, kind):
    def fn(opts):
        return dict({name: equivariance.compute_equivariance(opts, num_samples=num_samples, kind=kind)})
    fn.__name__ = name
    fn.__doc__ = f'StyleGAN3 equivariance ({kind}) in dB PSNR over {num_samples} images.'
    return register_metric(fn, name)


# Recommended (StyleGAN2-ADA names).
_fid('fid50k_full', 50000)
_kid('kid50k_full', 50000)
_pr('pr50k3_full', 50000)
_ppl('ppl2_wend', space='w', sampling='end', crop=False)
_is('is50k', 50000)

# Legacy: against 50k real images.
_fid('fid50k', 50000, max_real=50000, full=False)
_kid('kid50k', 50000, max_real=50000, full=False)
_pr('pr50k3', 50000, max_real=50000, full=False)

# Other PPL variants of StyleGAN2-ADA.
_ppl('ppl_zfull', space='z', sampling='full', crop=True)
_ppl('ppl_wfull', space='w', sampling='full', crop=True)
_ppl('ppl_zend', space='z', sampling='end', crop=True)
_ppl('ppl_wend', space='w', sampling='end', crop=True)

# Camera-control accuracy.
_pose('pose_err', 5000)
_pose('pose_err1k', 1000)

# Mode coverage on synthetic heads (attribute classifiers trained on the real images).
_attr_tv('attr_tv', 5000)
_attr_tv('attr_tv1k', 1000)
_kid_synth('kid_synth', 5000)
_kid_synth('kid_synth1k', 1000)

# StyleGAN3 equivariance (StyleGAN3-based networks only), and small variants.
for _n, _tag in ((50000, '50k'), (5000, '5k'), (1000, '1k')):
    _eq(f'eqt{_tag}_int', _n, 'int')
    _eq(f'eqt{_tag}_frac', _n, 'frac')
    _eq(f'eqr{_tag}', _n, 'rot')

# Small variants for quick checks (fewer generated images; real statistics over the full dataset).
for _n, _tag in ((10000, '10k'), (5000, '5k'), (1000, '1k'), (100, '100')):
    _fid(f'fid{_tag}_full', _n)
    _kid(f'kid{_tag}_full', _n, max_subset_size=min(1000, _n))
    if _n >= 1000:
        _pr(f'pr{_tag}3_full', _n)
_ppl('ppl2_wend1k', space='w', sampling='end', crop=False, num_samples=1000)
_is('is5k', 5000)
_is('is1k', 1000)

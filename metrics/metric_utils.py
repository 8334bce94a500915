"""Shared machinery of the quality metrics: options, feature detectors fetched by URL, feature
statistics (with a disk cache for datasets), camera sampling for generated images, progress with
images/s, and the gathering of results across processes.

The interface follows StyleGAN2-ADA's `metrics/metric_utils.py` (MetricOptions, FeatureStats,
ProgressMonitor, compute_feature_stats_for_dataset/generator), so metric modules read the same;
generation goes through `raycond.generate` so camera-conditioned networks get cameras drawn from
the dataset's labels, and camera-less networks get an empty label.
"""

from __future__ import annotations

import copy
import hashlib
import os
import pickle
import time

import numpy as np
import torch

import dnnlib
from raycond import atomic_io
from raycond import families
from raycond import generate as rgen

# ----------------------------------------------------------------------------- detectors
# Detector files (URLs, environment overrides, decoding, the per-process cache) live in
# raycond.feature_nets, shared with photo inversion; the names stay importable from here.

from raycond.feature_nets import (  # noqa: F401
    INCEPTION_ENV, INCEPTION_URL, VGG16_ENV, VGG16_URL, get_feature_detector, get_feature_detector_name,
    inception_url, vgg16_url,
)


def run_detector(detector, images: torch.Tensor, **detector_kwargs) -> torch.Tensor:
    """Detector on uint8 NCHW images (grayscale repeated to RGB) → (N, F) float32."""
    if images.shape[1] == 1:
        images = images.repeat([1, 3, 1, 1])
    with torch.no_grad():
        out = detector(images, **detector_kwargs)
    return out.reshape(out.shape[0], -1).float()

# ----------------------------------------------------------------------------- options


class MetricOptions:
    """Everything a metric needs: the generator, the dataset, the process layout and progress."""

    def __init__(self, G=None, G_kwargs={}, dataset_kwargs={}, num_gpus=1, rank=0, device=None, progress=None,
                 cache=True, seed=None, on_batch=None):
        assert 0 <= rank < num_gpus
        self.G = G
        self.G_kwargs = dnnlib.EasyDict(G_kwargs)
        self.dataset_kwargs = dnnlib.EasyDict(dataset_kwargs)
        self.num_gpus = num_gpus
        self.rank = rank
        if device is None:
            device = torch.device('cuda', rank) if torch.cuda.is_available() else torch.device('cpu')
        self.device = torch.device(device)
        self.progress = progress.sub() if progress is not None and rank == 0 else ProgressMonitor()
        if on_batch is not None:        # the caller's per-batch hook (its thread policy), on every rank
            self.progress.on_batch = on_batch
        self.cache = cache
        self.seed = int(np.random.randint(1 << 31)) if seed is None else int(seed)
        self.progress.rates = {}
        self.rates = self.progress.rates  # tag -> images/s of this metric's passes, filled as they finish

    def torch_generator(self, salt: int = 0) -> torch.Generator:
        """Random stream for this rank (different per rank and per use)."""
        g = torch.Generator(device='cpu')
        g.manual_seed((self.seed * 1000003 + self.rank * 7919 + salt) % (1 << 62))
        return g

    def numpy_rng(self, salt: int = 0) -> np.random.RandomState:
        return np.random.RandomState((self.seed * 31 + self.rank * 7919 + salt * 104729) % (1 << 31))

# ----------------------------------------------------------------------------- distributed


def gather_interleaved(x: torch.Tensor, num_gpus: int) -> torch.Tensor:
    """All ranks' equally shaped (N, ...) tensors → (num_gpus·N, ...), sample i of rank r at i·num_gpus + r."""
    if num_gpus <= 1 or not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return x
    parts = [torch.empty_like(x) for _ in range(num_gpus)]
    torch.distributed.all_gather(parts, x.contiguous())
    return torch.stack(parts, dim=1).flatten(0, 1)


def all_reduce_sum(x: torch.Tensor, num_gpus: int) -> torch.Tensor:
    """Sum a tensor over all ranks (no-op for one process)."""
    if num_gpus > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
        x = x.clone()
        torch.distributed.all_reduce(x)
    return x


def barrier(num_gpus: int) -> None:
    if num_gpus > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()

# ----------------------------------------------------------------------------- feature statistics


class FeatureStats:
    """Accumulates features: all of them (capture_all) and/or their mean and covariance."""

    def __init__(self, capture_all=False, capture_mean_cov=False, max_items=None):
        self.capture_all = capture_all
        self.capture_mean_cov = capture_mean_cov
        self.max_items = max_items
        self.num_items = 0
        self.num_features = None
        self.all_features = None
        self.raw_mean = None
        self.raw_cov = None

    def set_num_features(self, num_features):
        if self.num_features is not None:
            if num_features != self.num_features:
                raise ValueError(f'feature size changed from {self.num_features} to {num_features}')
            return
        self.num_features = num_features
        self.all_features = []
        self.raw_mean = np.zeros([num_features], dtype=np.float64)
        self.raw_cov = np.zeros([num_features, num_features], dtype=np.float64)

    def is_full(self):
        return self.max_items is not None and self.num_items >= self.max_items

    def append(self, x):
        """Add (N, F) features, dropping whatever goes past max_items."""
        x = np.asarray(x, dtype=np.float32)
        assert x.ndim == 2
        if self.max_items is not None:
            x = x[:max(self.max_items - self.num_items, 0)]
        self.set_num_features(x.shape[1])
        if x.shape[0] == 0:
            return
        self.num_items += x.shape[0]
        if self.capture_all:
            self.all_features.append(x)
        if self.capture_mean_cov:
            x64 = x.astype(np.float64)
            self.raw_mean += x64.sum(axis=0)
            self.raw_cov += x64.T @ x64

    def append_torch(self, x, num_gpus=1, rank=0):
        """Add this rank's features after gathering every rank's (same-sized) batch."""
        assert isinstance(x, torch.Tensor) and x.ndim == 2
        assert 0 <= rank < num_gpus
        self.append(gather_interleaved(x, num_gpus).cpu().numpy())

    def get_all(self):
        assert self.capture_all
        if not self.all_features:
            return np.zeros([0, self.num_features or 0], dtype=np.float32)
        return np.concatenate(self.all_features, axis=0)

    def get_all_torch(self):
        return torch.from_numpy(self.get_all())

    def get_mean_cov(self):
        """Mean and (biased, 1/N) covariance of everything appended."""
        assert self.capture_mean_cov
        mean = self.raw_mean / self.num_items
        cov = self.raw_cov / self.num_items - np.outer(mean, mean)
        return mean, cov

    def save(self, pkl_file):
        """Pickle the statistics to `pkl_file` atomically (a cache must never be half-written)."""
        atomic_io.prepare_output_folder(os.path.dirname(pkl_file), log=None)
        atomic_io.save_pickle(pkl_file, self.__dict__)

    @staticmethod
    def load(pkl_file):
        with open(pkl_file, 'rb') as f:
            state = pickle.load(f)
        obj = FeatureStats()
        obj.__dict__.update(state)
        return obj

# ----------------------------------------------------------------------------- progress


class ProgressMonitor:
    """Progress of a metric: a tqdm bar with images/s per feature pass when verbose, and the
    measured rate of every finished pass in `rates` (shared with sub-monitors). `on_batch()` runs at
    every update, on the computing thread (an entry point passes its thread policy's hook)."""

    def __init__(self, tag=None, num_items=None, verbose=False, rates=None, progress_fn=None,
                 pfn_lo=0.0, pfn_hi=1.0, pfn_total=1.0, unit='img', on_batch=None):
        self.tag = tag
        self.unit = unit
        self.num_items = num_items
        self.verbose = verbose
        self.rates = {} if rates is None else rates
        self.progress_fn = progress_fn
        self.on_batch = on_batch
        self.pfn_lo, self.pfn_hi, self.pfn_total = pfn_lo, pfn_hi, pfn_total
        self.start_time = time.time()
        self.cur_items = 0
        self._bar = None
        if verbose and tag is not None:
            import tqdm
            self._bar = tqdm.tqdm(total=num_items, desc=f'{tag:<20s}', unit=unit, dynamic_ncols=True, leave=True)
        if progress_fn is not None:
            progress_fn(pfn_lo, pfn_total)

    def update(self, cur_items):
        """Report that `cur_items` items are done in total."""
        if self.on_batch is not None:
            self.on_batch()
        if self.num_items is not None:
            cur_items = min(cur_items, self.num_items)
        if self._bar is not None:
            self._bar.update(cur_items - self.cur_items)
        self.cur_items = cur_items
        if self.progress_fn is not None and self.num_items:
            self.progress_fn(self.pfn_lo + (self.pfn_hi - self.pfn_lo) * cur_items / self.num_items, self.pfn_total)
        if self.tag is not None and self.num_items is not None and cur_items >= self.num_items:
            self.close()

    def close(self):
        if self.tag is not None and self.unit == 'img' and self.tag not in self.rates and self.cur_items > 0:
            self.rates[self.tag] = self.cur_items / max(time.time() - self.start_time, 1e-9)
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def sub(self, tag=None, num_items=None, rel_lo=0.0, rel_hi=1.0, unit='img'):
        return ProgressMonitor(tag=tag, num_items=num_items, verbose=self.verbose, rates=self.rates, unit=unit,
                               progress_fn=self.progress_fn, on_batch=self.on_batch,
                               pfn_lo=self.pfn_lo + (self.pfn_hi - self.pfn_lo) * rel_lo,
                               pfn_hi=self.pfn_lo + (self.pfn_hi - self.pfn_lo) * rel_hi,
                               pfn_total=self.pfn_total)

# ----------------------------------------------------------------------------- datasets


def file_fingerprint(path) -> str:
    """Size and modification time of a dataset file (or of a folder's entries), so a dataset
    rewritten at the same path gets fresh statistics."""
    try:
        path = os.path.expanduser(str(path))
        if os.path.isdir(path):
            entries = sorted(os.listdir(path))
            st = [os.stat(os.path.join(path, e)) for e in entries if e == 'dataset.json']
            return f'dir:{len(entries)}:{os.stat(path).st_mtime_ns}:' + ','.join(str(s.st_mtime_ns) for s in st)
        st = os.stat(path)
        return f'file:{st.st_size}:{st.st_mtime_ns}'
    except (OSError, TypeError):
        return ''


def make_dataset(dataset_kwargs) -> torch.utils.data.Dataset:
    """Build the dataset described by `dataset_kwargs` (class_name + arguments). The options may
    come from a snapshot, so the class must be one of raycond.families' dataset classes and every
    argument one it lists: a file never chooses what is called."""
    if not dataset_kwargs or 'class_name' not in dataset_kwargs:
        raise ValueError('metrics need a dataset: dataset_kwargs must name its class_name and path '
                         '(give --data to calc_metrics.py)')
    problem = families.check_dataset_kwargs(dict(dataset_kwargs))
    if problem:
        raise ValueError(f'dataset options refused: {problem}; give the dataset with --data')
    kwargs = {k: v for k, v in dataset_kwargs.items() if k not in families.DATASET_DATA_KEYS}
    return dnnlib.util.construct_class_by_name(class_name=dataset_kwargs['class_name'], **kwargs)


def stats_cache_file(opts, dataset_name, detector_url, detector_kwargs, stats_kwargs, extra=None) -> str:
    """Cache file for dataset statistics under make_cache_dir_path('gan-metrics')."""
    args = dict(dataset_kwargs=dict(opts.dataset_kwargs), detector_url=detector_url,
                detector_kwargs=detector_kwargs, stats_kwargs=stats_kwargs, extra=extra,
                fingerprint=file_fingerprint(opts.dataset_kwargs.get('path')))
    md5 = hashlib.md5(repr(sorted(args.items())).encode('utf-8')).hexdigest()
    tag = f'{dataset_name}-{get_feature_detector_name(detector_url)}-{md5}'
    return dnnlib.util.make_cache_dir_path('gan-metrics', tag + '.pkl')


def _cache_exists(opts, cache_file) -> bool:
    """Whether rank 0 sees the cache file (all ranks agree)."""
    flag = os.path.isfile(cache_file) if opts.rank == 0 else False
    if opts.num_gpus > 1 and torch.distributed.is_initialized():
        t = torch.as_tensor(float(flag), dtype=torch.float32, device=opts.device)
        torch.distributed.broadcast(t, src=0)
        flag = float(t.cpu()) != 0
    return flag


def _default_loader_kwargs(device) -> dict:
    if torch.device(device).type == 'cuda':
        return dict(pin_memory=True, num_workers=3, prefetch_factor=2)
    return dict(num_workers=0)


def compute_feature_stats_for_dataset(opts, detector_url, detector_kwargs, rel_lo=0, rel_hi=1, batch_size=64,
                                      data_loader_kwargs=None, max_items=None, **stats_kwargs) -> FeatureStats:
    """Detector features of the dataset's images (the first `max_items`), cached on disk."""
    dataset = make_dataset(opts.dataset_kwargs)
    if data_loader_kwargs is None:
        data_loader_kwargs = _default_loader_kwargs(opts.device)

    cache_file = None
    if opts.cache:
        cache_file = stats_cache_file(opts, dataset.name, detector_url, detector_kwargs,
                                      dict(stats_kwargs, max_items=max_items))
        if _cache_exists(opts, cache_file):
            return FeatureStats.load(cache_file)

    num_items = len(dataset) if max_items is None else min(len(dataset), max_items)
    stats = FeatureStats(max_items=num_items, **stats_kwargs)
    progress = opts.progress.sub(tag='dataset features', num_items=num_items, rel_lo=rel_lo, rel_hi=rel_hi)
    detector = get_feature_detector(detector_url, device=opts.device, num_gpus=opts.num_gpus, rank=opts.rank,
                                    verbose=progress.verbose)

    # Every rank takes the same number of items (wrapping around), so gathers line up.
    item_subset = [(i * opts.num_gpus + opts.rank) % num_items for i in range((num_items - 1) // opts.num_gpus + 1)]
    loader = torch.utils.data.DataLoader(dataset=dataset, sampler=item_subset, batch_size=batch_size,
                                         **data_loader_kwargs)
    try:
        for images, _labels in loader:
            features = run_detector(detector, images.to(opts.device), **detector_kwargs)
            stats.append_torch(features, num_gpus=opts.num_gpus, rank=opts.rank)
            progress.update(stats.num_items)
    finally:
        progress.close()

    if cache_file is not None and opts.rank == 0:
        stats.save(cache_file)
    return stats

# ----------------------------------------------------------------------------- generated images


class LabelSampler:
    """Draws labels for generated images: cameras (or class labels) from the dataset, like
    training does; an empty (N, 0) label for networks without c."""

    def __init__(self, opts, c_dim: int, salt: int = 0):
        self.c_dim = int(c_dim)
        self.device = opts.device
        self.rng = opts.numpy_rng(salt)
        self.labels = None
        if self.c_dim > 0:
            self.labels = dataset_labels(opts.dataset_kwargs)
            if self.labels.shape[1] != self.c_dim:
                raise ValueError(f'the network takes {self.c_dim}-value labels but dataset '
                                 f'{opts.dataset_kwargs.get("path")} has labels of size {self.labels.shape[1]}'
                                 + (' (none: it has no dataset.json labels)' if self.labels.shape[1] == 0 else ''))

    def __call__(self, n: int) -> torch.Tensor:
        if self.labels is None:
            return torch.zeros([n, 0], device=self.device)
        idx = self.rng.randint(len(self.labels), size=n)
        return torch.from_numpy(self.labels[idx]).to(self.device)


_labels_cache: dict = {}


def dataset_labels(dataset_kwargs) -> np.ndarray:
    """All labels (N, label_dim) float32 of a dataset, as `get_label` returns them (x-flipped items
    get mirrored cameras). Labels are loaded even if the kwargs say use_labels=False, because a
    generator that takes a camera needs one."""
    key = repr(sorted(dict(dataset_kwargs).items())) + file_fingerprint(dataset_kwargs.get('path'))
    if key not in _labels_cache:
        kwargs = dnnlib.EasyDict(dataset_kwargs)
        if 'use_labels' in kwargs or kwargs.get('class_name', '').endswith('ImageFolderDataset'):
            kwargs.use_labels = True
        dataset = make_dataset(kwargs)
        labels = np.stack([dataset.get_label(i) for i in range(len(dataset))]).astype(np.float32)
        labels = labels.reshape(len(dataset), -1)
        _labels_cache.clear()
        _labels_cache[key] = labels
    return _labels_cache[key]


def generate_uint8(G, z: torch.Tensor, c: torch.Tensor, G_kwargs=None) -> torch.Tensor:
    """Generator → uint8 NCHW images through raycond.generate (c goes to mapping and, for
    camera-conditioned synthesis, to synthesis)."""
    G_kwargs = dict(G_kwargs or {})
    psi = G_kwargs.pop('truncation_psi', 1)
    cutoff = G_kwargs.pop('truncation_cutoff', None)
    noise_mode = G_kwargs.pop('noise_mode', 'const')
    ws = rgen.map_latents(G, z, c, truncation_psi=psi, truncation_cutoff=cutoff)
    img = rgen.synthesize(G, ws, c if c.shape[1] else None, noise_mode=noise_mode,
                          force_fp32=G_kwargs.pop('force_fp32', True), **G_kwargs)
    return (img.float() * 127.5 + 128).clamp(0, 255).to(torch.uint8)


def prepare_generator(opts):
    """A private eval copy of opts.G on opts.device."""
    return copy.deepcopy(opts.G).eval().requires_grad_(False).to(opts.device)


def compute_feature_stats_for_generator(opts, detector_url, detector_kwargs, rel_lo=0, rel_hi=1, batch_size=64,
                                        batch_gen=None, **stats_kwargs) -> FeatureStats:
    """Detector features of `max_items` generated images (cameras drawn from the dataset labels)."""
    if batch_gen is None:  # small generator batches on GPUs (as StyleGAN2-ADA), whole batches on CPUs
        batch_gen = min(batch_size, 4) if opts.device.type == 'cuda' else batch_size
    assert batch_size % batch_gen == 0
    G = prepare_generator(opts)
    sample_c = LabelSampler(opts, G.c_dim, salt=1)
    zgen = opts.torch_generator(salt=1)

    stats = FeatureStats(**stats_kwargs)
    if stats.max_items is None:
        raise ValueError('compute_feature_stats_for_generator needs max_items')
    progress = opts.progress.sub(tag='generator features', num_items=stats.max_items, rel_lo=rel_lo, rel_hi=rel_hi)
    detector = get_feature_detector(detector_url, device=opts.device, num_gpus=opts.num_gpus, rank=opts.rank,
                                    verbose=progress.verbose)
    try:
        while not stats.is_full():
            images = []
            with torch.no_grad():
                for _ in range(batch_size // batch_gen):
                    z = torch.randn([batch_gen, G.z_dim], generator=zgen).to(opts.device)
                    images.append(generate_uint8(G, z, sample_c(batch_gen), opts.G_kwargs))
            features = run_detector(detector, torch.cat(images), **detector_kwargs)
            stats.append_torch(features, num_gpus=opts.num_gpus, rank=opts.rank)
            progress.update(stats.num_items)
    finally:
        progress.close()
    return stats


def all_features(opts, detector_url, max_real, num_gen):
    """Every real (up to `max_real`) and generated (`num_gen`) feature vector for a detector:
    what KID and precision/recall compare."""
    detector_kwargs = dict(return_features=True)
    real = compute_feature_stats_for_dataset(opts=opts, detector_url=detector_url, detector_kwargs=detector_kwargs,
                                             rel_lo=0, rel_hi=0, capture_all=True, max_items=max_real).get_all()
    gen = compute_feature_stats_for_generator(opts=opts, detector_url=detector_url, detector_kwargs=detector_kwargs,
                                              rel_lo=0, rel_hi=1, capture_all=True, max_items=num_gen).get_all()
    return real, gen

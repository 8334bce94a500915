"""The disk cache of the small CNN probes that metrics measure with (`pose_err`, `attr_tv`,
`kid_synth`; the probes themselves: training/terms/probes.py): weights plus whatever the metric
keeps beside them, under dnnlib's 'gan-metrics' folder, keyed by the dataset file and the probe's
configuration, so each probe trains once per dataset.
"""

from __future__ import annotations

import hashlib
import os

import torch

import dnnlib
from metrics import metric_utils


def cached_probe(opts, kind: str, dataset, dataset_kwargs, config: dict, build, train):
    """The probe of `kind` for this dataset and config: loaded from the cache, or trained now.

    build() → an untrained module (the shape the cached weights fit); train() → (module, extra)
    where `extra` is a dict of tensors/numbers/lists the metric keeps beside the weights (its
    floor, real-image statistics). Rank 0 trains first while the other ranks wait, then they load
    its file. Returns (module in eval mode on opts.device, extra)."""
    cache_file = None
    if opts.cache:
        key = (repr(sorted(dict(dataset_kwargs).items())) + metric_utils.file_fingerprint(dataset_kwargs.get('path'))
               + repr(sorted(config.items())))
        cache_file = dnnlib.util.make_cache_dir_path(
            'gan-metrics', f'{dataset.name}-{kind}-{hashlib.md5(key.encode()).hexdigest()}.pt')
        if opts.rank != 0:
            metric_utils.barrier(opts.num_gpus)  # rank 0 trains (or loads) first
        if os.path.isfile(cache_file):
            state = torch.load(cache_file, map_location='cpu', weights_only=True)
            model = build()
            model.load_state_dict(state['model'])
            if opts.rank == 0:
                metric_utils.barrier(opts.num_gpus)
            return model.eval().requires_grad_(False).to(opts.device), state['extra']

    model, extra = train()
    model = model.eval().requires_grad_(False).to(opts.device)
    if cache_file is not None and opts.rank == 0:
        state = dict(model={k: v.cpu() for k, v in model.state_dict().items()}, extra=extra, config=config)
        os.makedirs(os.path.dirname(cache_file) or '.', exist_ok=True)
        dnnlib.util.atomic_write(cache_file, lambda f: torch.save(state, f))
        metric_utils.barrier(opts.num_gpus)
    return model, extra

"""Compare the snapshots of training runs on quick metrics, averaged over several seeds.

Choosing which snapshot to keep means comparing many snapshots on
metrics whose value moves with the seed of the generated sample (attr_tv by up to 0.008 at 5k
images): one seed can rank two snapshots either way. This prints one markdown row per snapshot
(every --every kimg of each run) with each result's mean over --seeds and half its range.

    python benchmarks/snapshot_table.py --run training-runs/00012-... --run other.pkl \\
        --metrics=pose_err1k,attr_tv --seeds=0,1,2 --every=8 --data=datasets/synthheads-64x64.zip --mirror=1
"""

from __future__ import annotations

import os
import re
import sys

import click

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from raycond import runtime  # noqa: E402  (first: it chooses OpenMP's wait policy before torch loads)

import numpy as np  # noqa: E402
import torch  # noqa: E402

import calc_metrics  # noqa: E402
from metrics import metric_main  # noqa: E402
from raycond import loading  # noqa: E402

SNAPSHOT = re.compile(r'network-snapshot-(\d+(?:\.\d+)?)\.pkl$')


def snapshots(path: str, every: float) -> list[tuple[str, float | None]]:
    """(pickle, kimg) of `path`: a pickle file itself (kimg None), or a run directory's snapshots
    at multiples of `every` kimg (0: all), oldest first."""
    if os.path.isfile(path):
        return [(path, None)]
    if not os.path.isdir(path):
        raise click.BadParameter(f'{path}: neither a network pickle nor a run directory')
    found = []
    for name in os.listdir(path):
        m = SNAPSHOT.match(name)
        if m:
            kimg = float(m.group(1))
            if every <= 0 or abs(kimg / every - round(kimg / every)) < 1e-9:
                found.append((os.path.join(path, name), kimg))
    return sorted(found, key=lambda item: item[1])


def summarize(per_seed: list[dict]) -> dict[str, tuple[float, float]]:
    """{key: (mean, half range)} over the seeds' results (keys every seed reported)."""
    keys = [k for k in per_seed[0] if all(k in r for r in per_seed)]
    out = {}
    for k in keys:
        v = np.array([float(r[k]) for r in per_seed])
        out[k] = (float(v.mean()), float(v.max() - v.min()) / 2)
    return out


def format_row(label: str, kimg, summary: dict, keys: list[str]) -> str:
    cells = [f'{summary[k][0]:.4f} ± {summary[k][1]:.4f}' if k in summary else '—' for k in keys]
    return f'| {label} | {"—" if kimg is None else f"{kimg:g}"} | ' + ' | '.join(cells) + ' |'


@click.command(help=__doc__)
@click.option('--run', 'runs', multiple=True, required=True, metavar='DIR|PKL', help='Run directory or network pickle (repeatable).')
@click.option('--metrics', default='pose_err1k,attr_tv', show_default=True, help='Comma-separated metric names.')
@click.option('--seeds', default='0,1,2', show_default=True, help='Seeds of the generated samples to average over.')
@click.option('--every', type=float, default=8, show_default=True, help='Only snapshots at multiples of this many kimg (0: all).')
@click.option('--keys', default=None, help='Result keys to show (default: each metric\'s main result).')
@click.option('--data', metavar='ZIP|DIR', default=None, help='Dataset (default: the one recorded in the snapshot).')
@click.option('--mirror', type=bool, default=None, metavar='BOOL', help='x-flipped images too (default: as in training).')
@click.option('--threads', 'num_threads', type=click.IntRange(min=0), default=0, show_default=True, help=runtime.THREADS_HELP)
def main(runs, metrics, seeds, every, keys, data, mirror, num_threads):
    runtime.start(num_threads)
    metric_names = metric_main.parse_metric_list(metrics)
    seed_list = [int(s) for s in seeds.split(',') if s.strip()]
    keys = [k.strip() for k in keys.split(',')] if keys else None
    header_done = False
    for run in runs:
        for pkl, kimg in snapshots(run, every):
            snapshot = loading.load_snapshot(pkl)
            G = snapshot.get('G_ema', snapshot.get('G'))
            if not isinstance(G, torch.nn.Module):
                raise click.ClickException(f'{pkl} holds no generator (G_ema or G)')
            G = G.eval().requires_grad_(False)
            dataset_kwargs = calc_metrics.dataset_kwargs_for(snapshot, G, calc_metrics.find_run_dir(pkl), data,
                                                             mirror, pkl)
            per_seed, main_keys = [], []
            for seed in seed_list:
                merged = {}
                for metric in metric_names:
                    result = metric_main.calc_metric(metric=metric, G=G, dataset_kwargs=dataset_kwargs, num_gpus=1,
                                                     rank=0, device=torch.device('cpu'), progress=None, seed=seed)
                    merged.update(result.results)
                    if seed == seed_list[0]:
                        main_keys.append(next(iter(result.results)))  # e.g. pose_err, attr_tv
                per_seed.append(merged)
            if not header_done:
                keys = keys or main_keys
                print(f'seeds {seed_list}; mean ± half range\n')
                print('| snapshot | kimg | ' + ' | '.join(keys) + ' |')
                print('|---|---|' + '---|' * len(keys))
                header_done = True
            label = os.path.basename(os.path.dirname(pkl)) if kimg is not None else os.path.basename(pkl)
            print(format_row(label, kimg, summarize(per_seed), keys), flush=True)


if __name__ == '__main__':
    main()

"""Compute quality metrics (FID, KID, precision/recall, PPL, IS, pose_err) for a network pickle.

For a training-run snapshot the dataset options are looked up in the snapshot (or the run's
training_options.json) and each result is appended to `metric-<name>.jsonl` in the run directory;
for a pickle from elsewhere give --data (and --mirror). Examples:

\b
python calc_metrics.py --metrics=kid50k_full,pr50k3_full \\
    --network=~/training-runs/00000-raycond-mydataset/network-snapshot-000000.pkl
python calc_metrics.py --metrics=fid50k_full --data=~/datasets/ffhq-512x512.zip --mirror=1 \\
    --network=weights/raycond2-ffhq-512x512.pkl

Feature detectors (Inception-v3, VGG16) are downloaded once into the dnnlib cache
($DNNLIB_CACHE_DIR, default ~/.cache/dnnlib); offline, place them by hand at the path the error
names, or point $RAYCOND_DETECTOR_URL_INCEPTION / $RAYCOND_DETECTOR_URL_VGG16 at local copies.
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
import traceback

import click

from raycond import runtime  # first: it chooses OpenMP's wait policy before torch loads
import torch

import dnnlib
from metrics import metric_main, metric_utils
from raycond import families
from raycond import generate as rgen
from raycond import loading
from raycond import precision
from torch_utils import distributed

DATASET_CLASS = 'training.dataset.ImageFolderDataset'


# ----------------------------------------------------------------------------- setup


def find_run_dir(network_pkl: str) -> str | None:
    """The training-run directory of a local snapshot (the folder holding training_options.json)."""
    if not os.path.isfile(network_pkl):
        return None
    pkl_dir = os.path.dirname(os.path.abspath(network_pkl))
    return pkl_dir if os.path.isfile(os.path.join(pkl_dir, 'training_options.json')) else None


def dataset_kwargs_for(snapshot: dict, G, run_dir: str | None, data: str | None, mirror: bool | None,
                       network_pkl: str) -> dnnlib.EasyDict:
    """Dataset options: from --data, else the snapshot's training_set_kwargs, else the run's
    training_options.json. --mirror overrides the x-flip setting in every case."""
    if data is not None:
        if not os.path.exists(os.path.expanduser(data)):
            raise FileNotFoundError(f'--data: dataset not found: {data}')
        kwargs = dnnlib.EasyDict(class_name=DATASET_CLASS, path=os.path.expanduser(data),
                                 use_labels=int(getattr(G, 'c_dim', 0) or 0) != 0, xflip=False, max_size=None,
                                 resolution=int(G.img_resolution))
    else:
        kwargs = snapshot.get('training_set_kwargs')
        if not kwargs and run_dir is not None:
            with open(os.path.join(run_dir, 'training_options.json'), 'rt') as f:
                kwargs = json.load(f).get('training_set_kwargs')
        if not kwargs:
            raise ValueError(f'{network_pkl} does not record its training data; give the dataset with --data '
                             f'(and --mirror if training used x-flips)')
        problem = families.check_dataset_kwargs(kwargs)
        if problem:   # the file must not choose what runs: its dataset options are data, checked
            raise ValueError(f'{network_pkl}: its training_set_kwargs were ignored ({problem}); '
                             f'give the dataset with --data')
        kwargs = dnnlib.EasyDict(copy.deepcopy(dict(kwargs)))
        path = kwargs.get('path')
        if path is not None and not os.path.exists(os.path.expanduser(path)):
            raise FileNotFoundError(f'the training dataset of {network_pkl} is not at {path}; give it with --data')
    if mirror is not None:
        kwargs.xflip = bool(mirror)
    return kwargs


def _last_message_line(e: BaseException) -> str:
    msg = str(e).strip()
    return msg.splitlines()[-1] if msg else type(e).__name__


def format_rates(result) -> str:
    rates = result.get('images_per_sec') or {}
    return ', '.join(f'{tag} {rate:.1f} img/s' for tag, rate in rates.items())


def run_process(rank: int, args: dnnlib.EasyDict, temp_dir: str | None) -> None:
    """Compute every metric in one process (rank) of `args.num_gpus`."""
    if args.num_gpus > 1:
        distributed.init_spawned(args.device_type, rank, args.num_gpus, temp_dir)
        runtime.start(args.num_threads, procs=args.num_gpus)   # spawned ranks share the CPUs
    if args.device_type == 'cuda':
        device = distributed.rank_device('cuda', rank if args.num_gpus > 1 else (args.device.index or 0))
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    else:
        device = args.device
    G = args.G.to(device)
    progress = metric_utils.ProgressMonitor(verbose=args.progress) if rank == 0 else None
    force_fp32 = rgen.force_fp32_for(device, args.fp32, G)

    for metric in args.metrics:
        G_kwargs = dict(force_fp32=force_fp32)   # the equivariance metrics keep float32 themselves
        result = metric_main.calc_metric(metric=metric, G=G, dataset_kwargs=args.dataset_kwargs,
                                         num_gpus=args.num_gpus, rank=rank, device=device, progress=progress,
                                         cache=args.cache, seed=args.seed, G_kwargs=G_kwargs)
        if rank == 0:
            metric_main.report_metric(result, run_dir=args.run_dir, snapshot_pkl=args.network_pkl)
            rates = format_rates(result)
            print(f'{metric}: {result.total_time_str}' + (f' ({rates})' if rates else ''), flush=True)
    if args.num_gpus > 1:
        torch.distributed.barrier()
        distributed.destroy()


def calc_metrics(network_pkl, metrics, data=None, mirror=None, gpus=1, device='auto', seed=None, cache=True,
                 progress=True, num_threads=0, trust_pickle=False, fp32=False):
    """Load the network, work out the dataset and run directory, compute and report each metric."""
    metric_names = metric_main.parse_metric_list(metrics)
    if not metric_names:
        raise ValueError(f'--metrics: nothing to compute (valid metrics: {", ".join(metric_main.list_valid_metrics())})')
    if gpus < 1:
        raise ValueError(f'--gpus must be at least 1, got {gpus}')
    dev = rgen.resolve_device(device)
    if dev.type == 'cuda' and gpus > torch.cuda.device_count():
        raise ValueError(f'--gpus={gpus} but only {torch.cuda.device_count()} CUDA devices are visible')
    if dev.type == 'mps' and gpus > 1:
        raise ValueError('--gpus > 1 needs CUDA devices (or --device cpu for several CPU processes)')

    network_pkl = loading.resolve_network_path(network_pkl)
    snapshot = loading.load_snapshot(network_pkl, trust_pickle=trust_pickle)
    G = snapshot.get('G_ema', snapshot.get('G'))
    if not isinstance(G, torch.nn.Module):
        raise loading.NetworkLoadError(f'{network_pkl} holds no generator (G_ema or G)')
    G = G.eval().requires_grad_(False)
    run_dir = find_run_dir(network_pkl)
    dataset_kwargs = dataset_kwargs_for(snapshot, G, run_dir, data, mirror, network_pkl)
    info = loading.network_info(G, snapshot)
    if progress:
        print(f'Network: {network_pkl} ({info.summary()}; '
              f'{precision.describe(dev, rgen.force_fp32_for(dev, fp32, G), G)})')
        print(f'Dataset: {dataset_kwargs.get("path")} (x-flips: {bool(dataset_kwargs.get("xflip"))})')
        if run_dir is not None:
            print(f'Results are appended to {os.path.join(run_dir, "metric-<name>.jsonl")}')

    args = dnnlib.EasyDict(G=G, metrics=metric_names, dataset_kwargs=dataset_kwargs, num_gpus=gpus, run_dir=run_dir,
                           network_pkl=network_pkl, device=dev, device_type=dev.type, seed=seed, cache=cache,
                           progress=progress, num_threads=num_threads, fp32=fp32)
    if gpus == 1:
        run_process(0, args, None)
    else:
        torch.multiprocessing.set_start_method('spawn', force=True)
        with tempfile.TemporaryDirectory() as temp_dir:
            torch.multiprocessing.spawn(fn=run_process, args=(args, temp_dir), nprocs=gpus)


# ----------------------------------------------------------------------------- command line


@click.command(context_settings=dict(help_option_names=['-h', '--help']), help=__doc__)
@click.option('--network', 'network_pkl', required=True, metavar='PATH|URL',
              help='Network pickle (file, URL, or a training-run directory for its newest snapshot).')
@click.option('--metrics', default='fid50k_full', show_default=True,
              help='Comma-separated metric names: ' + ', '.join(metric_main.list_valid_metrics()) + '.')
@click.option('--data', metavar='[ZIP|DIR]',
              help='Dataset to compare against. Default: the dataset recorded in the snapshot or its run directory.')
@click.option('--mirror', type=bool, metavar='BOOL',
              help='Add x-flipped images (with mirrored cameras). Default: as recorded for training, else off.')
@click.option('--gpus', type=int, default=1, show_default=True,
              help='Number of processes: one per GPU (with --device cpu, gloo processes on the CPU).')
@click.option('--device', default='auto', show_default=True, help=rgen.DEVICE_HELP)
@click.option('--seed', type=int, default=None, help='Random seed for generated samples. Default: a new one each run.')
@click.option('--cache/--no-cache', default=True, show_default=True,
              help='Reuse dataset statistics and pose estimators cached under $DNNLIB_CACHE_DIR/gan-metrics.')
@click.option('--quiet', is_flag=True, help='No progress bars or summaries, only the result lines.')
@click.option('--threads', 'num_threads', type=click.IntRange(min=0), default=0, show_default=True,
              help=runtime.THREADS_HELP + ' Split among processes (--gpus).')
@click.option('--trust-pickle', is_flag=True, help=loading.TRUST_PICKLE_HELP)
@click.option('--fp32', is_flag=True, help=precision.FP32_HELP + ' Equivariance metrics always use float32.')
@click.option('--verbose', is_flag=True, help='Show full tracebacks on errors.')
def main(network_pkl, metrics, data, mirror, gpus, device, seed, cache, quiet, num_threads, verbose, trust_pickle,
         fp32):
    try:
        runtime.start(num_threads, procs=gpus)
        calc_metrics(network_pkl, metrics, data=data, mirror=mirror, gpus=gpus, device=device, seed=seed,
                     cache=cache, progress=not quiet, num_threads=num_threads, trust_pickle=trust_pickle,
                     fp32=fp32)
    except (click.ClickException, click.Abort):
        raise
    except KeyboardInterrupt:
        # Caches are published atomically and results appended only when complete: nothing partial stays.
        click.echo('Interrupted; no result was recorded for the unfinished metric.', err=True)
        raise SystemExit(130) from None
    except Exception as e:  # one clear line unless --verbose
        if verbose:
            traceback.print_exc()
        raise click.ClickException(_last_message_line(e)) from None


if __name__ == '__main__':
    main()  # pylint: disable=no-value-for-parameter

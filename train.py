"""Train a ray-conditioned GAN (or a StyleGAN2 / pose-conditioned baseline).

Examples:

\b
  # Train on FFHQ with camera labels using 8 GPUs.
  python train.py --outdir=~/training-runs --data=~/datasets/ffhq-512x512.zip \\
      --gpus=8 --batch=32 --gamma=8.2 --mirror=1

\b
  # Small run on the CPU with synthetic heads (dataset_tool.py synth). Training uses CUDA
  # when it is available; CUDA_VISIBLE_DEVICES= python train.py ... keeps it on the CPU.
  python train.py --outdir=training-runs --data=datasets/heads-64.zip --batch=32 --gamma=1 \\
      --cbase=8192 --cmax=256 --map-depth=2 --kimg=500 --tick=4 --snap=10

\b
  # Continue the newest matching run in --outdir (same options); run it again
  # until it says the run is complete, e.g. in a cluster job that may be killed.
  python train.py ... --kimg=5000 --resume=auto

\b
  # Fine-tune from another run's snapshot (or a StyleGAN2-ADA pickle): train 500 kimg more.
  python train.py ... --kimg=500 --resume=~/training-runs/00003-stylegan2-ffhq/network-snapshot-025000.pkl

\b
Output: <outdir>/NNNNN-<desc>/ holds log.txt, stats.jsonl, fakes<KIMG>.png and
network-snapshot-<KIMG>.pkl (KIMG: thousands of images), all written atomically.
The recipe of the bundled checkpoint: docs/training-recipes.md.
"""

import contextlib
import json
import os
import shlex
import sys
import tempfile

import click

from raycond import runtime  # first: it chooses OpenMP's wait policy before torch loads
import torch

import dnnlib
from metrics import metric_main
from raycond import atomic_io
from raycond import camera as cam
from raycond import families
from raycond import generate as gen
from raycond import loading
from raycond import precision
from raycond import rundir
from torch_utils import custom_ops
from torch_utils import distributed
from torch_utils import training_stats
from training import terms
from training import training_loop as tl
from training.augment import AUGPIPE_SPECS, default_augpipe
from training.dataset import DatasetError, ImageFolderDataset

CFGS = families.train_configs()
EMBEDDINGS = ('plucker', 'origin_dir', 'two_plane', 'none')
RAYS_FORMS = ('EMBEDDING[:layers=all|R,R,...][:torgb=BOOL], EMBEDDING one of ' + ', '.join(EMBEDDINGS)
              + ", e.g. plucker, none or plucker:layers=4,8,16:torgb=1")
RAYS_HELP = ('Ray conditioning of the raycond generators, EMBEDDING[:KEY=VALUE...]: EMBEDDING is plucker, '
             'origin_dir, two_plane or none (unconditional synthesis); layers=all or the synthesis resolutions that '
             'get rays, e.g. layers=4,8,16 (StyleGAN2 backbone only); torgb=1 also feeds rays to the ToRGB layers. '
             'E.g. plucker:layers=4,8,16:torgb=1. The configs without rays (posecond*, stylegan*) ignore it')

# ----------------------------------------------------------------------------


class _Tee:
    """Copy everything written to a stream into log.txt as well.

    When the log cannot be written (disk full, folder gone read-only) the console copy goes on,
    so that the error explaining it still reaches the user.
    """

    def __init__(self, stream, fname):
        self.stream = stream
        self.file = open(fname, 'a')

    def write(self, text):
        self.stream.write(text)
        self._to_file(lambda f: (f.write(text), f.flush()))

    def flush(self):
        self.stream.flush()
        self._to_file(lambda f: f.flush())

    def _to_file(self, op):
        """op(log file); a log that cannot be written is closed and dropped (the console copy goes on)."""
        if self.file is not None:
            try:
                op(self.file)
            except OSError:
                self.close()

    def close(self):
        if self.file is not None:
            try:
                self.file.close()
            except OSError:
                pass
            self.file = None

    def isatty(self):
        return False

    def __getattr__(self, name):
        return getattr(self.stream, name)


@contextlib.contextmanager
def _open_log(run_dir):
    """Tee stdout/stderr of this process into run_dir/log.txt while the block runs."""
    fname = os.path.join(run_dir, 'log.txt')
    old = sys.stdout, sys.stderr
    sys.stdout = _Tee(old[0], fname)
    sys.stderr = _Tee(old[1], fname)
    try:
        yield
    finally:
        tees = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = old
        for tee in tees:
            if isinstance(tee, _Tee):
                tee.close()


def _set_cpu_threads(c, procs_per_machine, rank):
    """The thread policy (raycond/runtime.py); CPU ranks on one machine share its cores."""
    policy = runtime.start(c.get('threads') or None, procs=procs_per_machine if c.device_type == 'cpu' else 1)
    if rank == 0 and c.device_type == 'cpu':
        print(f'CPU threads per process: {policy.describe()}')


def subprocess_fn(rank, c, temp_dir):
    """Entry of one spawned training process (rank) on this machine."""
    with (_open_log(c.run_dir) if rank == 0 else contextlib.nullcontext()):
        _subprocess_body(rank, c, temp_dir)


def _subprocess_body(rank, c, temp_dir):
    if c.num_gpus > 1:
        distributed.init_spawned(c.device_type, rank, c.num_gpus, temp_dir)
    _set_cpu_threads(c, c.num_gpus, rank)
    device = distributed.rank_device(c.device_type, rank)
    _init_stats(rank, c.num_gpus, device)
    _run_loop(c, rank=rank, device=device)
    if c.num_gpus > 1:
        distributed.destroy()


def _init_stats(rank, num_gpus, device):
    if num_gpus > 1:  # one process needs no set-up (and may train several times, e.g. under CliRunner)
        training_stats.init_multiprocessing(rank=rank, sync_device=torch.device(device))
    if rank != 0:
        custom_ops.verbosity = 'none'


LAUNCH_KEYS = ('device_type', 'desc', 'resume_auto', 'threads')  # build_config keys that are not training_loop options

# Set once this process's training loop has finished its set-up (data, networks, resume, terms) and
# reports progress: from then on an exception is a crash in training, shown with its traceback.
_training_started = False


def _progress(*args):
    """The training loop's per-iteration hook: it follows the CPU competition (raycond/runtime.py), on
    the computing thread, and its first call (before the first iteration) marks the set-up as done."""
    global _training_started
    _training_started = True
    return runtime.step(*args)


def _run_loop(c, rank, device):
    if rank == 0:
        # Killed writers (SIGKILL, power loss) leave hidden temporary snapshot files behind.
        line = rundir.describe_cleanup(*rundir.clean_stale_temps(os.path.dirname(c.run_dir)))
        if line:
            print(line)
    kwargs = {k: v for k, v in c.items() if k not in LAUNCH_KEYS}
    tl.training_loop(rank=rank, device=device, progress_fn=_progress, **kwargs)


next_run_dir = rundir.next_run_dir


def default_workers() -> int:
    """StyleGAN's 3 DataLoader workers, but no more than the cores less one (torch warns at every
    epoch when workers outnumber the cores)."""
    return max(0, min(3, runtime.usable_cpus() - 1))


def describe_processes(num_gpus, device_type) -> str:
    """'2 (cuda)', or for the CPU how many cores the processes share."""
    if device_type != 'cpu':
        return f'{num_gpus} ({device_type})'
    cores = runtime.usable_cpus()
    text = f'{num_gpus} CPU process{"es" if num_gpus > 1 else ""} on {cores} core{"s" if cores > 1 else ""}'
    return text + (' (more processes than cores: each runs slower)' if num_gpus > cores else '')


def print_options(c, desc, dry_run):
    print()
    print('Training options:')
    print(json.dumps(c, indent=2))
    print()
    print(f'Output directory:    {c.run_dir}')
    print(f'Number of processes: {describe_processes(c.num_gpus, c.device_type)}')
    print(f'Batch size:          {c.batch_size} images')
    print(f'Training duration:   {c.total_kimg:g} kimg')
    print(f'Dataset path:        {c.training_set_kwargs.path}')
    print(f'Dataset size:        {c.training_set_kwargs.max_size} images')
    print(f'Dataset resolution:  {c.training_set_kwargs.resolution}')
    print(f'Dataset labels:      {c.training_set_kwargs.use_labels}')
    print(f'Dataset x-flips:     {c.training_set_kwargs.xflip}')
    print(f'Resume from:         {c.resume_pkl}')
    print()
    if dry_run:
        print('Dry run; exiting.')


def _pick_run_dir(c, outdir, desc):
    """(run directory, reused?): with --resume=auto the newest run of this set-up that a killed
    attempt left without a snapshot (rundir.resume_run_dir), else the next free id."""
    reused = rundir.resume_run_dir(outdir, desc) if c.get('resume_auto') else None
    return (reused, True) if reused else (next_run_dir(outdir, desc), False)


def launch_training(c, desc, outdir, dry_run):
    """Create the run directory and start 1 process, N spawned processes, or join torchrun."""
    torchrun = distributed.torchrun_env()
    if torchrun is not None:
        return _launch_torchrun(c, desc, outdir, dry_run, torchrun)
    c.run_dir, reuse = _pick_run_dir(c, outdir, desc)
    print_options(c, desc, dry_run)
    if dry_run:
        return
    print('Reusing output directory (it holds no snapshot)...' if reuse else 'Creating output directory...')
    rundir.claim_run_dir(c.run_dir, c, reuse=reuse)
    print('Launching processes...')
    if c.num_gpus == 1:
        subprocess_fn(rank=0, c=c, temp_dir=None)
    else:
        torch.multiprocessing.set_start_method('spawn', force=True)
        with tempfile.TemporaryDirectory() as temp_dir:
            torch.multiprocessing.spawn(fn=subprocess_fn, args=(c, temp_dir), nprocs=c.num_gpus)


def _launch_torchrun(c, desc, outdir, dry_run, env):
    """Join the torchrun process group; rank 0 picks the run dir and tells the others."""
    rank, world_size, local_rank = env
    if dry_run:
        if rank == 0:
            c.run_dir = next_run_dir(outdir, desc)
            print_options(c, desc, dry_run)
        return
    distributed.init_torchrun(c.device_type)
    run_dir = [None]
    if rank == 0:
        c.run_dir, reuse = _pick_run_dir(c, outdir, desc)
        print_options(c, desc, False)
        rundir.claim_run_dir(c.run_dir, c, reuse=reuse)
        run_dir = [c.run_dir]
    torch.distributed.broadcast_object_list(run_dir, src=0)
    c.run_dir = run_dir[0]
    with (_open_log(c.run_dir) if rank == 0 else contextlib.nullcontext()):
        local_procs = int(os.environ.get('LOCAL_WORLD_SIZE', world_size))
        _set_cpu_threads(c, local_procs, rank)
        device = distributed.rank_device(c.device_type, local_rank)
        _init_stats(rank, world_size, device)
        _run_loop(c, rank=rank, device=device)
        distributed.destroy()


# ----------------------------------------------------------------------------


class RunComplete(Exception):
    """--resume=auto found a run that already reached --kimg (not an error: exit status 0)."""


def parse_rays(text):
    """--rays 'plucker:layers=4,8,16:torgb=1' -> EasyDict(embedding='plucker', layers='4,8,16', torgb=True);
    'plucker' -> layers 'all', torgb False. The layers are checked against the data by parse_ray_layers."""
    embedding, *pairs = [s.strip() for s in (text or '').split(':')]
    if embedding not in EMBEDDINGS:
        raise ValueError(f'--rays: unknown embedding {embedding!r} in {text!r}; expected {RAYS_FORMS}')
    spec = dnnlib.EasyDict(embedding=embedding, layers='all', torgb=False)
    given = set()
    for pair in pairs:
        key, eq, value = [s.strip() for s in pair.partition('=')]
        if not eq or key not in ('layers', 'torgb') or key in given:
            why = f'{key} is given twice' if key in given and eq else f'{pair!r} is not layers=... or torgb=...'
            raise ValueError(f'--rays: {why} in {text!r}; expected {RAYS_FORMS}')
        given.add(key)
        if key == 'layers':
            spec.layers = value
            continue
        try:
            spec.torgb = click.BOOL.convert(value, None, None)
        except click.BadParameter:
            raise ValueError(f'--rays: torgb={value!r} is not a boolean (1 or 0, true or false); '
                             f'expected {RAYS_FORMS}') from None
    return spec


def parse_ray_layers(s, resolution):
    """--rays layers=: 'all' -> None (every layer); '4,8,16' -> sorted list of resolutions (validated)."""
    if s is None or s.strip() == 'all':
        return None
    try:
        res = sorted({int(x) for x in s.split(',') if x.strip()})
    except ValueError:
        raise ValueError(f"--rays: layers must be 'all' or a comma list of resolutions like layers=4,8,16, "
                         f"got layers={s}; expected {RAYS_FORMS}") from None
    valid = [2 ** i for i in range(2, resolution.bit_length())]
    bad = [r for r in res if r not in valid]
    if bad or not res:
        raise ValueError(f'--rays: layers={s}: {bad or s} not among the synthesis resolutions {valid}')
    return res


CONVERT_COMMAND = 'python -m raycond.convert --trust-pickle {src} {dst}'


def _converted_name(path):
    """Where `python -m raycond.convert` should write a file refused for resuming: beside it, .safetensors."""
    if dnnlib.util.is_url(path):
        path = path.rstrip('/').rsplit('/', 1)[-1] or 'network'
    return os.path.splitext(path)[0] + '.safetensors'


def _load_resume_snapshot(resume_pkl):
    """The snapshot to resume from, loaded the safe way. Our own snapshots and converted files load; a
    file that needs its code run to load is refused in one line saying how to convert it once."""
    try:
        return loading.load_snapshot(resume_pkl)
    except loading.UntrustedPickleError as e:
        found = f' ({", ".join(e.names[:4])}{" ..." if len(e.names) > 4 else ""})' if e.names else ''
        converted = shlex.quote(_converted_name(resume_pkl))
        command = CONVERT_COMMAND.format(src=shlex.quote(resume_pkl), dst=converted)
        raise ValueError(f'--resume: {resume_pkl} needs code to load{found}; after checking its source, convert it '
                         f'once with `{command}` and resume from the converted file (--resume={converted})') from None


def _resume_snapshot_info(resume_pkl):
    """(img_resolution, kimg of progress or None) of a resume snapshot."""
    snap = _load_resume_snapshot(resume_pkl)
    G = snap.get('G_ema', snap.get('G'))
    if G is None:
        raise ValueError(f'--resume={resume_pkl}: the snapshot has no generator (G_ema or G)')
    # What the training loop reads from the snapshot, checked here so that a bad file is one line.
    bad = [k for k in ('G', 'D', 'G_ema') if snap.get(k) is not None and not isinstance(snap[k], torch.nn.Module)]
    progress = snap.get('progress') if isinstance(snap.get('progress'), dict) else None
    counters = {k: v for k, v in (progress or {}).items() if k in ('cur_nimg', 'cur_tick', 'batch_idx', 'augment_p',
                                                                   'pl_mean')}
    bad += [f'progress.{k}' for k, v in counters.items()
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not -1e18 < v < 1e18)]
    if bad or not isinstance(getattr(G, 'img_resolution', None), int):
        raise ValueError(f'--resume={resume_pkl}: the snapshot holds {", ".join(bad) or "a generator"} of an '
                         f'unexpected kind; expected networks and numeric progress counters')
    kimg = progress['cur_nimg'] / 1000 if progress and progress.get('cur_nimg') is not None else None
    return int(G.img_resolution), kimg


def training_device() -> str:
    """'cuda' when CUDA is available, else 'cpu'. CUDA_VISIBLE_DEVICES= (empty) in the environment
    hides the GPUs from CUDA (read when CUDA starts), so the run trains on the CPU."""
    return gen.resolve_device('auto', allow_mps=False).type


def build_config(opts):
    """Validate options and build the training_loop kwargs (EasyDict). Raises ValueError early."""
    c = dnnlib.EasyDict()
    c.device_type = training_device()  # each process picks cuda:<rank>
    c.threads = opts.threads
    _set_processes(c, opts)
    data = _set_dataset(c, opts)
    _set_networks(c, opts, data.resolution)
    _set_loss(c, opts, data.camera_labels)
    _set_augmentation(c, opts, data.camera_labels)
    c.total_kimg = opts.kimg
    c.kimg_per_tick = opts.tick
    c.image_snapshot_ticks = c.network_snapshot_ticks = opts.snap
    c.random_seed = opts.seed
    c.cudnn_benchmark = not opts.nobench
    c.metrics = _parse_metrics(opts.metrics, c.device_type)
    c.desc = f'{opts.cfg}-{data.name}-gpus{c.num_gpus}-batch{c.batch_size}-gamma{opts.gamma:g}'
    if opts.desc is not None:
        c.desc += f'-{opts.desc}'
    _set_resume(c, opts, data.resolution)
    return c


def _set_processes(c, opts):
    """Processes (--gpus, or torchrun's world), the batch and the images per process per step."""
    torchrun = distributed.torchrun_env()
    num_gpus = torchrun[1] if torchrun is not None else opts.gpus
    if num_gpus < 1:
        raise ValueError('--gpus must be at least 1')
    if c.device_type == 'cuda' and torchrun is None and num_gpus > torch.cuda.device_count():
        raise ValueError(f'--gpus={num_gpus} but only {torch.cuda.device_count()} CUDA device(s) are visible')
    if opts.batch % num_gpus != 0:
        raise ValueError(f'--batch={opts.batch} must be a multiple of --gpus={num_gpus}')
    batch_gpu = opts.batch_gpu or opts.batch // num_gpus
    if opts.batch % (num_gpus * batch_gpu) != 0:
        raise ValueError(f'--batch={opts.batch} must be a multiple of --gpus * --batch-gpu = {num_gpus * batch_gpu}')
    if batch_gpu < opts.mbstd_group or batch_gpu % opts.mbstd_group != 0:
        raise ValueError(f'--batch-gpu={batch_gpu} must be a multiple of --mbstd-group={opts.mbstd_group} '
                         f'(images per process per step)')
    c.num_gpus = num_gpus
    c.batch_size = opts.batch
    c.batch_gpu = batch_gpu


def _set_dataset(c, opts):
    """Open the dataset now (bad data fails before any work) and set the data options; returns
    what the rest of the configuration needs to know about it."""
    if not os.path.exists(opts.data):
        raise FileNotFoundError(f'--data: dataset not found: {opts.data}')
    dataset = ImageFolderDataset(path=opts.data, use_labels=True, xflip=False, random_seed=opts.seed)
    label_kind = dataset.file_label_kind
    camera_cfg = _family(opts.cfg).camera
    cond = opts.cond if opts.cond is not None else camera_cfg
    if camera_cfg:
        if not cond:
            raise ValueError(f'--cfg={opts.cfg} needs camera labels; --cond=0 is only for --cfg='
                             + ', '.join(c for c in CFGS if not _family(c).camera))
        if label_kind != 'camera':
            raise ValueError(f'--cfg={opts.cfg} needs {cam.LABEL_DIM}-float camera labels (EG3D format) in dataset.json; '
                             f'dataset {opts.data} has ' + ('no labels' if label_kind == 'none' else 'class labels'))
    if cond and label_kind == 'none':
        raise ValueError(f'--cond=1 but dataset {opts.data} has no labels (dataset.json with "labels")')
    c.training_set_kwargs = dnnlib.EasyDict(class_name='training.dataset.ImageFolderDataset', path=opts.data,
                                            use_labels=bool(cond), max_size=len(dataset), xflip=bool(opts.mirror),
                                            resolution=dataset.resolution, random_seed=opts.seed)
    info = dnnlib.EasyDict(name=dataset.name, resolution=dataset.resolution,
                           camera_labels=bool(cond) and label_kind == 'camera')
    dataset.close()
    c.data_loader_kwargs = dnnlib.EasyDict(pin_memory=(c.device_type == 'cuda'), prefetch_factor=2,
                                           num_workers=opts.workers if opts.workers is not None else default_workers())
    return info


def _family(cfg):
    """The raycond/families.py row of a --cfg."""
    return families.family(families.train_config(cfg)[0])


def _set_networks(c, opts, resolution):
    """G and D of --cfg's family (raycond/families.py) with its defaults and the ray options, their
    optimizers and regularization intervals."""
    fam = _family(opts.cfg)
    fp32 = opts.fp32 or precision.layer_dtype(c.device_type) == torch.float32   # fp16 on CUDA, bf16 on some CPUs
    sg3 = fam.backbone == 'stylegan3'
    c.G_kwargs = dnnlib.EasyDict(class_name=fam.generator, z_dim=512, w_dim=512, mapping_kwargs=dnnlib.EasyDict())
    c.G_kwargs.update(fam.defaults)
    c.G_kwargs.mapping_kwargs.num_layers = (2 if sg3 else 8) if opts.map_depth is None else opts.map_depth
    c.G_kwargs.channel_base = opts.cbase
    c.G_kwargs.channel_max = opts.cmax
    c.D_kwargs = dnnlib.EasyDict(class_name=fam.discriminator, block_kwargs=dnnlib.EasyDict(),
                                 mapping_kwargs=dnnlib.EasyDict(), epilogue_kwargs=dnnlib.EasyDict())
    c.D_kwargs.channel_base = opts.cbase
    c.D_kwargs.channel_max = opts.cmax
    c.D_kwargs.block_kwargs.freeze_layers = opts.freezed
    c.D_kwargs.epilogue_kwargs.mbstd_group_size = opts.mbstd_group
    c.G_kwargs.num_fp16_res = c.D_kwargs.num_fp16_res = 0 if fp32 else 4
    c.G_kwargs.conv_clamp = c.D_kwargs.conv_clamp = None if fp32 else 256
    rays = parse_rays(opts.rays)
    if c.G_kwargs.get('embedding', 'none') != 'none':
        _set_ray_options(c, rays, resolution, fam)
    c.G_opt_kwargs = dnnlib.EasyDict(class_name='torch.optim.Adam', betas=[0, 0.99], eps=1e-8, lr=opts.glr)
    c.D_opt_kwargs = dnnlib.EasyDict(class_name='torch.optim.Adam', betas=[0, 0.99], eps=1e-8, lr=opts.dlr)
    c.G_reg_interval = 4
    c.D_reg_interval = 16
    if sg3:  # StyleGAN3: magnitude EMA, no path length reg.; R: 1x1 convs, radial filters.
        c.G_kwargs.magnitude_ema_beta = 0.5 ** (c.batch_size / (20 * 1e3))
        c.G_reg_interval = None
        if opts.cfg.endswith('-r'):
            c.G_kwargs.conv_kernel = 1
            c.G_kwargs.channel_base *= 2
            c.G_kwargs.channel_max *= 2
            c.G_kwargs.use_radial_filters = True
    c.ema_kimg = c.batch_size * 10 / 32
    c.ema_rampup = 0.05


def _set_ray_options(c, rays, resolution, fam):
    """How a family that feeds camera rays to G sees them (--rays, parsed by parse_rays)."""
    c.G_kwargs.embedding = rays.embedding
    c.G_kwargs.ray_torgb = bool(rays.torgb)
    c.G_kwargs.camera_in_mapping = False
    ray_layers = parse_ray_layers(rays.layers, resolution)
    if fam.backbone == 'stylegan2':  # the StyleGAN3 backbone has no layer subset
        c.G_kwargs.ray_layers = ray_layers
    elif ray_layers is not None:
        raise ValueError('--rays: this generator always feeds rays to every layer; only layers=all is supported')


def _set_loss(c, opts, camera_labels):
    """StyleGAN2's loss (StyleGAN3 configs: no style mixing, no path length reg.) and the --term plugins."""
    sg3 = _family(opts.cfg).backbone == 'stylegan3'
    c.loss_kwargs = dnnlib.EasyDict(class_name='training.loss.StyleGAN2Loss', r1_gamma=opts.gamma,
                                    style_mixing_prob=0 if sg3 else 0.9, pl_weight=0 if sg3 else 2,
                                    pl_batch_shrink=2, pl_decay=0.01)
    specs = terms.parse_terms(opts.term)
    need = terms.needs_camera(specs)
    if need and not camera_labels:
        raise ValueError(f'--term={",".join(need)} needs networks conditioned on camera labels: a dataset with camera '
                         f'labels and --cond=1 (default for raycond2/posecond2/raycond3-*); got --cfg={opts.cfg}')
    if specs:
        c.loss_kwargs.terms = specs


def _set_augmentation(c, opts, camera_labels):
    """ADA (or fixed-p) augmentation; with camera labels only colour changes (see --aug)."""
    c.augment_kwargs = None
    c.augment_p = 0.0
    c.ada_target = None
    if opts.aug != 'noaug':
        spec = AUGPIPE_SPECS[default_augpipe(camera_labels)]
        c.augment_kwargs = dnnlib.EasyDict(class_name='training.augment.AugmentPipe', **spec)
        if opts.aug == 'ada':
            c.ada_target = opts.target
        else:
            c.augment_p = opts.p


def _parse_metrics(text, device_type):
    """--metrics → list of valid metric names (a note when a 50k metric would take hours on the CPU)."""
    metrics = [] if text.strip().lower() == 'none' else [m.strip() for m in text.split(',') if m.strip()]
    bad = [m for m in metrics if not metric_main.is_valid_metric(m)]
    if bad:
        raise ValueError(f'--metrics: unknown metric(s) {", ".join(bad)}; valid: '
                         f'{", ".join(metric_main.list_valid_metrics())}')
    if device_type == 'cpu' and any(m.startswith(('fid50k', 'kid50k', 'pr50k', 'is50k', 'ppl')) for m in metrics):
        click.echo(f'Note: --metrics={",".join(metrics)} on the CPU takes hours per snapshot; '
                   'consider --metrics=none or a small variant like fid5k_full', err=True)
    return metrics


def _set_resume(c, opts, resolution):
    """--resume: the snapshot to start from (auto: this description's newest), checked against the data."""
    c.resume_pkl = None
    c.resume_auto = opts.resume == 'auto'
    c.resume_counters = c.resume_auto
    if opts.resume is not None:
        if c.resume_auto:
            c.resume_pkl = rundir.find_resume_snapshot(opts.outdir, c.desc)
            if c.resume_pkl is None:
                print(f'--resume=auto: no earlier run "*-{c.desc}" with a snapshot in {opts.outdir}; starting from scratch')
        else:
            if not dnnlib.util.is_url(opts.resume, allow_file_urls=True) and not os.path.exists(opts.resume):
                raise FileNotFoundError(f'--resume: snapshot not found: {opts.resume}')
            c.resume_pkl = opts.resume
    if c.resume_pkl is None:
        return
    res, kimg = _resume_snapshot_info(c.resume_pkl)
    if res != resolution:
        raise ValueError(f'--resume: snapshot {c.resume_pkl} generates {res}x{res} images but dataset '
                         f'{opts.data} is {resolution}x{resolution}')
    if c.resume_auto and kimg is not None and kimg >= opts.kimg:
        raise RunComplete(f'Training is complete: {c.resume_pkl} has reached {kimg:g} kimg of --kimg={opts.kimg:g}; '
                          f'nothing to do (raise --kimg to train longer).')
    if not c.resume_auto:
        c.ema_rampup = None  # Like StyleGAN2-ADA: no EMA ramp-up when starting from trained weights.


# ----------------------------------------------------------------------------


@click.command(help=__doc__, context_settings=dict(help_option_names=["-h", "--help"]))
@click.pass_context
# Required.
@click.option('--outdir', help='Where to make the output run directory', metavar='DIR', required=True)
@click.option('--cfg', help='Network family (raycond/families.py): raycond2 (rays into every synthesis layer), '
              'posecond2 (camera into the mapping network), stylegan2 (no camera in G; D uses labels with --cond=1); '
              'NAME3-t/-r: the same on the StyleGAN3 (alias-free) generator',
              type=click.Choice(CFGS), default='raycond2', show_default=True)
@click.option('--data', help='Training data: ZIP or folder of PNG/JPEG images with dataset.json labels',
              metavar='[ZIP|DIR]', required=True)
@click.option('--gpus', help='Number of processes: GPUs with CUDA, else CPU processes with gloo (to train on the CPU '
              'of a machine with a GPU, run with CUDA_VISIBLE_DEVICES= (empty)). Ignored under torchrun',
              metavar='INT', type=click.IntRange(min=1), default=1, show_default=True)
@click.option('--batch', help='Total batch size', metavar='INT', type=click.IntRange(min=1), required=True)
@click.option('--gamma', help='R1 regularization weight', metavar='FLOAT', type=click.FloatRange(min=0), required=True)
# Optional features.
@click.option('--cond', help='Train conditional model (default: 1 for raycond2/posecond2, 0 for stylegan2)',
              metavar='BOOL', type=bool, default=None)
@click.option('--mirror', help='Enable dataset x-flips (cameras are mirrored too)', metavar='BOOL', type=bool,
              default=False, show_default=True)
@click.option('--aug', help='Augmentation mode. With camera labels the pipeline only changes colours '
              '(brightness, contrast, luma flip, hue, saturation): no flips, rotations or scaling that would '
              'contradict the camera. Without camera labels: blit + geometry + colour',
              type=click.Choice(['noaug', 'ada', 'fixed']), default='ada', show_default=True)
@click.option('--resume', help='Resume from a snapshot. "auto": continue the newest run with the same description '
              'in --outdir from its newest snapshot (kimg counter, optimizer states, augment p; starts from scratch '
              'if there is none; says so and exits 0 if it is complete). PATH or URL: start a new run from those '
              'weights and train --kimg more; with a larger --cmax/--cbase than the snapshot (same --cfg, StyleGAN2 '
              'family) the wider network starts computing exactly what the snapshot did', metavar='[PATH|URL|auto]', type=str)
@click.option('--freezed', help='Freeze first layers of D', metavar='INT', type=click.IntRange(min=0), default=0,
              show_default=True)
# Misc hyperparameters.
@click.option('--p', help='Probability for --aug=fixed', metavar='FLOAT', type=click.FloatRange(min=0, max=1),
              default=0.2, show_default=True)
@click.option('--target', help='Target value for --aug=ada', metavar='FLOAT', type=click.FloatRange(min=0, max=1),
              default=0.6, show_default=True)
@click.option('--batch-gpu', help='Limit batch size per process (gradient accumulation) [default: batch/gpus]',
              metavar='INT', type=click.IntRange(min=1))
@click.option('--cbase', help='Capacity multiplier', metavar='INT', type=click.IntRange(min=1), default=32768,
              show_default=True)
@click.option('--cmax', help='Max. feature maps', metavar='INT', type=click.IntRange(min=1), default=512,
              show_default=True)
@click.option('--glr', help='G learning rate', metavar='FLOAT', type=click.FloatRange(min=0), default=0.002,
              show_default=True)
@click.option('--dlr', help='D learning rate', metavar='FLOAT', type=click.FloatRange(min=0), default=0.002,
              show_default=True)
@click.option('--map-depth', help='Mapping network depth  [default: 8, 2 for StyleGAN3 configs]', metavar='INT',
              type=click.IntRange(min=1))
@click.option('--mbstd-group', help='Minibatch std group size', metavar='INT', type=click.IntRange(min=1), default=4,
              show_default=True)
# Ray conditioning.
@click.option('--rays', help=RAYS_HELP, metavar='EMBEDDING[:K=V]', type=str, default='plucker', show_default=True)
@click.option('--term', help=terms.term_help() + '. E.g. pose:10,attr-mix:3', metavar='NAME:W[:K=V],...', type=str)
# Misc settings.
@click.option('--desc', help='String to include in result dir name', metavar='STR', type=str)
@click.option('--metrics', help='Quality metrics to compute at each snapshot, comma separated (needs the metrics '
              'package) or "none". On the CPU, fid50k_full costs hours per snapshot: use none or a small variant '
              '(fid5k_full, pose_err1k). A metric that cannot run (e.g. detector offline) is switched off with a warning',
              metavar='[NAME|A,B,C|none]', type=str, default='fid50k_full', show_default=True)
@click.option('--kimg', help='Training duration in thousands of images (fractions allowed): the total with '
              '--resume=auto, the amount to train more with --resume=PATH',
              metavar='KIMG', type=click.FloatRange(min=0, min_open=True), default=25000, show_default=True)
@click.option('--tick', help='How often to print progress', metavar='KIMG', type=click.FloatRange(min=0, min_open=True),
              default=4, show_default=True)
@click.option('--snap', help='How often to save snapshots (image grid and network)', metavar='TICKS',
              type=click.IntRange(min=1), default=50, show_default=True)
@click.option('--seed', help='Random seed', metavar='INT', type=click.IntRange(min=0), default=0, show_default=True)
@click.option('--fp32', help='Disable mixed precision (fp16 layers on CUDA, bfloat16 on a CPU with native bfloat16; '
              'always off on other CPUs)', metavar='BOOL', type=bool,
              default=False, show_default=True)
@click.option('--nobench', help='Disable cuDNN benchmarking', metavar='BOOL', type=bool, default=False,
              show_default=True)
@click.option('--workers', help='DataLoader worker processes  [default: 3, at most the cores less one]',
              metavar='INT', type=click.IntRange(min=0))
@click.option('--threads', help=runtime.THREADS_HELP + ' Split among CPU processes.', metavar='INT',
              type=click.IntRange(min=0), default=0, show_default=True)
@click.option('-n', '--dry-run', help='Print training options and exit', is_flag=True)
def main(ctx, **kwargs):
    global _training_started
    _training_started = False
    opts = dnnlib.EasyDict(kwargs)
    opts.outdir = os.path.expanduser(opts.outdir)
    try:
        c = build_config(opts)
        launch_training(c=c, desc=c.desc, outdir=opts.outdir, dry_run=opts.dry_run)
    except RunComplete as e:
        click.echo(str(e))
        return
    except (ValueError, FileNotFoundError, DatasetError) as e:
        # Options, data and refused files: one line. A crash in the training itself: its traceback
        # (a data file that turns unreadable mid-run is still the data's fault).
        if _training_started and not isinstance(e, DatasetError):
            raise
        raise click.ClickException(str(e)) from None
    except OSError as e:
        if not rundir.is_disk_error(e):
            raise
        what = str(atomic_io.as_output_error(e, e.filename)) if e.filename else (e.strerror or str(e))
        raise click.ClickException(f'{what}; free space or choose another --outdir, then continue with '
                                   f'--resume=auto (same options)') from None
    except KeyboardInterrupt:
        # Snapshots are written atomically, so the newest one on disk is complete.
        click.echo('Training interrupted; resume with --resume=auto (same options) to continue '
                   'from the newest snapshot.', err=True)
        ctx.exit(130)


if __name__ == '__main__':
    main()

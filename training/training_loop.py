"""The StyleGAN2-ADA training loop, extended for camera (ray) conditioning.

One call of `training_loop()` runs in each process (rank) of a training job: it builds the
dataset and networks, optionally resumes from a snapshot, then alternates the lazy-regularized
phases Gmain/Greg/Dmain/Dreg, keeps an EMA generator, adapts the ADA probability, and at tick
boundaries prints a progress line, writes `stats.jsonl` (and TensorBoard events), image grids
and atomic network snapshots. Gradients are averaged across ranks with
`torch.distributed.all_reduce` (gloo on CPU, NCCL on CUDA).
"""

import copy
import dataclasses
import json
import os
import resource
import time

import numpy as np
import PIL.Image
import torch

import dnnlib
from metrics import metric_main
from raycond import atomic_io
from raycond import rundir
from raycond.camera import LABEL_DIM, camera_label
from raycond.loading import load_snapshot
from torch_utils import misc
from torch_utils import training_stats
from torch_utils.ops import conv2d_gradfix
from torch_utils.ops import grid_sample_gradfix
from training import terms
from training import widen

# ----------------------------------------------------------------------------
# Small helpers.


def memory_stats(device):
    """(current CPU RSS GiB, peak CPU RSS GiB, peak CUDA GiB or None) for the progress line."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
    rss = peak
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith('VmRSS:'):
                    rss = int(line.split()[1]) / 2**20
                    break
    except OSError:
        pass
    gpu = None
    if torch.device(device).type == 'cuda':
        gpu = torch.cuda.max_memory_allocated(device) / 2**30
    return rss, peak, gpu


def _to_cpu(obj):
    """Deep copy of nested dicts/lists with every tensor moved to the CPU."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().clone()
    if isinstance(obj, dict):
        return type(obj)((k, _to_cpu(v)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return copy.deepcopy(obj)


@torch.no_grad()
def copy_params_partial(src_module, dst_module):
    """Copy tensors by name; where the source is smaller in some dimensions (e.g. a StyleGAN2
    layer without the 6 ray channels), fill the leading slice and keep the rest as initialized.

    Returns dict(full=[names], partial=[names], fresh=[names]) describing what happened.
    """
    src = dict(misc.named_params_and_buffers(src_module))
    report = dict(full=[], partial=[], fresh=[])
    for name, dst in misc.named_params_and_buffers(dst_module):
        s = src.get(name)
        if s is None or s.ndim != dst.ndim:
            report['fresh'].append(name)
            continue
        s = s.detach().to(dst.device, dst.dtype)
        if s.shape == dst.shape:
            dst.copy_(s)
            report['full'].append(name)
        elif all(a <= b for a, b in zip(s.shape, dst.shape)):
            dst[tuple(slice(0, n) for n in s.shape)].copy_(s)
            report['partial'].append(name)
        else:
            report['fresh'].append(name)
    return report


def save_image_grid(img, fname, drange, grid_size):
    """Save float NCHW images as a grid of `grid_size` = (cols, rows) to a PNG."""
    lo, hi = drange
    img = np.asarray(img, dtype=np.float32)
    img = (img - lo) * (255 / (hi - lo))
    img = np.rint(img).clip(0, 255).astype(np.uint8)
    gw, gh = grid_size
    _n, c, h, w = img.shape
    img = img.reshape(gh, gw, c, h, w).transpose(0, 3, 1, 4, 2).reshape(gh * h, gw * w, c)
    pil = PIL.Image.fromarray(img[:, :, 0], 'L') if c == 1 else PIL.Image.fromarray(img, 'RGB')
    atomic_io.write_with(fname, lambda f: pil.save(f, format='png'))  # a killed run leaves no truncated PNG


def grid_shape(resolution):
    """(cols, rows) of the snapshot grids: more cells for small images."""
    cols = int(np.clip(1024 // resolution, 4, 8))
    rows = int(np.clip(768 // resolution, 2, 6))
    return cols, rows


def setup_snapshot_grid(training_set, camera_stats, use_camera_grid, z_dim, random_seed=0):
    """Latents and labels for the fakes grids.

    Camera data: rows are identities (one z each), columns are cameras sweeping the dataset's
    yaw range at its mean pitch. Otherwise: random z with labels drawn from the dataset.
    Returns (grid_size (cols, rows), z (N, z_dim) tensor, c (N, C) tensor, real images NCHW uint8).
    """
    rnd = np.random.RandomState(random_seed)
    cols, rows = grid_shape(training_set.resolution)
    num = cols * rows
    real_idx = rnd.randint(len(training_set), size=num)
    reals = np.stack([training_set[i][0] for i in real_idx])
    if use_camera_grid and camera_stats is not None:
        lo, hi = camera_stats['yaw_range_deg']
        yaws = np.linspace(lo, hi, cols)
        c_cols = camera_label(yaws, np.full(cols, camera_stats['pitch_mean_deg']), focal=camera_stats['focal'],
                              radius=camera_stats['radius'], lookat=camera_stats['lookat'])
        z_rows = torch.from_numpy(rnd.randn(rows, z_dim).astype(np.float32))
        z = z_rows.repeat_interleave(cols, dim=0)
        c = c_cols.float().repeat(rows, 1)
    else:
        z = torch.from_numpy(rnd.randn(num, z_dim).astype(np.float32))
        labels = [training_set.get_label(i) for i in rnd.randint(len(training_set), size=num)]
        c = torch.from_numpy(np.stack(labels).astype(np.float32))
    return (cols, rows), z, c, reals


@torch.no_grad()
def generate_grid(G, z, c, batch, device):
    """Images (float NCHW, [-1, 1]) for all (z, c) pairs with constant noise."""
    out = []
    for zb, cb in zip(z.split(batch), c.split(batch)):
        out.append(G(zb.to(device), cb.to(device), noise_mode='const').cpu())
    return torch.cat(out).numpy()


def build_phases(G, D, G_opt_kwargs, D_opt_kwargs, G_reg_interval=4, D_reg_interval=16):
    """Optimizers and the phase list [Gmain, Greg, Dmain, Dreg] (or Gboth/Dboth without lazy reg).

    With lazy regularization every `reg_interval` steps, lr and Adam betas are scaled by
    reg_interval / (reg_interval + 1) so that the effective schedule matches non-lazy training.
    """
    phases = []
    for name, module, opt_kwargs, reg_interval in [('G', G, G_opt_kwargs, G_reg_interval),
                                                   ('D', D, D_opt_kwargs, D_reg_interval)]:
        params = [p for p in module.parameters()]
        opt_kwargs = dnnlib.EasyDict(opt_kwargs)
        if 'betas' in opt_kwargs:
            opt_kwargs.betas = [float(beta) for beta in opt_kwargs.betas]
        if reg_interval is None:
            opt = dnnlib.util.construct_class_by_name(params=params, **opt_kwargs)
            phases += [dnnlib.EasyDict(name=name + 'both', module=module, opt=opt, interval=1)]
        else:
            mb_ratio = reg_interval / (reg_interval + 1)
            opt_kwargs.lr = opt_kwargs.lr * mb_ratio
            opt_kwargs.betas = [beta ** mb_ratio for beta in opt_kwargs.betas]
            opt = dnnlib.util.construct_class_by_name(params, **opt_kwargs)
            phases += [dnnlib.EasyDict(name=name + 'main', module=module, opt=opt, interval=1)]
            phases += [dnnlib.EasyDict(name=name + 'reg', module=module, opt=opt, interval=reg_interval)]
    return phases


def run_phases(phases, loss, batch_idx, phase_real_img, phase_real_c, all_gen_z, all_gen_c, num_gpus=1,
               num_rounds=1, cur_nimg=0):
    """One training iteration: every phase due at `batch_idx` accumulates gradients over the
    rounds (lists of per-round tensors), averages them across ranks and steps its optimizer."""
    for phase, phase_gen_z, phase_gen_c in zip(phases, all_gen_z, all_gen_c):
        if batch_idx % phase.interval != 0:
            continue
        phase.opt.zero_grad(set_to_none=True)
        phase.module.requires_grad_(True)
        for real_img, real_c, gen_z, gen_c in zip(phase_real_img, phase_real_c, phase_gen_z, phase_gen_c):
            loss.accumulate_gradients(phase=phase.name, real_img=real_img, real_c=real_c, gen_z=gen_z,
                                      gen_c=gen_c, gain=phase.interval / num_rounds, cur_nimg=cur_nimg)
        phase.module.requires_grad_(False)

        # Average gradients across ranks and update weights.
        with torch.autograd.profiler.record_function(phase.name + '_opt'):
            params = [p for p in phase.module.parameters() if p.numel() > 0 and p.grad is not None]
            if len(params) > 0:
                flat = torch.cat([p.grad.flatten() for p in params])
                if num_gpus > 1:
                    torch.distributed.all_reduce(flat)
                    flat /= num_gpus
                torch.nan_to_num(flat, nan=0, posinf=1e5, neginf=-1e5, out=flat)
                for p, g in zip(params, flat.split([p.numel() for p in params])):
                    p.grad = g.reshape(p.shape)
            phase.opt.step()


# ----------------------------------------------------------------------------
# Resume: networks, optimizer states, counters, random streams.
#
# A run killed at any moment continues from its newest snapshot with `--resume=auto` and, on the
# CPU, ends bit for bit where an uninterrupted run ends. That needs every piece of state the
# next iteration reads to be either in the snapshot or re-derived from it: weights and buffers,
# Adam states, augment p, the path-length mean, the image/tick/batch counters (lazy
# regularization phases), and the random streams. Rather than pickling RNG states (one per rank,
# and the DataLoader's sampler position), every run re-seeds torch/numpy and restarts its data
# order at each network snapshot from (seed, rank, image count); a resumed run does the same
# from the snapshot it starts at. The ADA sign accumulator is also restarted there (losing at
# most ada_interval - 1 batches of signs per snapshot), since a partial interval is not saved.


def resume_point_seeds(random_seed, num_gpus, rank, cur_nimg):
    """(torch/numpy seed of this rank, data-order seed shared by all ranks) at `cur_nimg` images.

    At 0 images these are the seeds runs always used; later, fresh streams derived from the count.
    """
    if cur_nimg == 0:
        return random_seed * num_gpus + rank, random_seed
    rank_seed = np.random.SeedSequence([random_seed, num_gpus, rank, cur_nimg]).generate_state(1)[0]
    data_seed = np.random.SeedSequence([random_seed, num_gpus, cur_nimg]).generate_state(1)[0]
    return int(rank_seed) % 2**31, int(data_seed) % 2**31


def start_random_streams(training_set, random_seed, num_gpus, rank, cur_nimg, batch_size, dl_kwargs):
    """Seed torch and numpy for `cur_nimg` and return a fresh training data iterator."""
    rank_seed, data_seed = resume_point_seeds(random_seed, num_gpus, rank, cur_nimg)
    sampler = misc.InfiniteSampler(dataset=training_set, rank=rank, num_replicas=num_gpus, seed=data_seed)
    iterator = iter(torch.utils.data.DataLoader(dataset=training_set, sampler=sampler,
                                                batch_size=batch_size // num_gpus, **dl_kwargs))
    np.random.seed(rank_seed)
    torch.manual_seed(rank_seed)  # after iter(): the DataLoader draws its base seed from torch
    return iterator


def restore_networks(resume_data, G, D, G_ema, rank=0):
    """Copy G, D and G_ema from a loaded snapshot (leading channels where shapes grew).

    Returns True when every tensor of every network was copied whole (same architecture), which
    is when optimizer states may be restored too.
    """
    same = True
    for name, module in [('G', G), ('D', D), ('G_ema', G_ema)]:
        src = resume_data.get(name)
        if src is None and name in ('G', 'G_ema'):  # files holding one generator seed both
            src = resume_data.get('G_ema', resume_data.get('G'))
        if src is None:
            same = False
            if rank == 0:
                print(f'  {name}: not in the snapshot, starting fresh')
            continue
        if widen.can_widen(src, module):  # same family: a whole copy, or a function-preserving widening
            rep = widen.widen_into(src, module)
            same = same and not rep['widened']
            if rank == 0:
                print(f'  {name}: {len(rep["full"])} tensors copied' + (
                    f', {len(rep["widened"])} widened (new channels start unused: the network computes what '
                    f'the snapshot did)' if rep['widened'] else ''))
            continue
        rep = copy_params_partial(src, module)
        same = same and not rep['partial'] and not rep['fresh']
        if rank == 0:
            msg = f'  {name}: {len(rep["full"])} tensors copied'
            if rep['partial']:
                msg += f', {len(rep["partial"])} copied into their leading channels'
            if rep['fresh']:
                msg += f', {len(rep["fresh"])} left fresh ({", ".join(rep["fresh"][:4])}' + \
                    (', ...)' if len(rep['fresh']) > 4 else ')')
            print(msg)
    return same


def optimizer_state_mismatch(opt, state_dict):
    """Why `state_dict` cannot be loaded into `opt` (a short phrase), or None if every parameter
    group has the same size and every per-parameter state tensor has its parameter's shape."""
    try:
        groups, saved_groups = opt.param_groups, state_dict['param_groups']
        if len(groups) != len(saved_groups):
            return f'{len(saved_groups)} parameter groups saved, {len(groups)} now'
        saved_state = state_dict['state']
        for group, saved in zip(groups, saved_groups):
            if len(group['params']) != len(saved['params']):
                return f'{len(saved["params"])} parameters saved, {len(group["params"])} now'
            for param, index in zip(group['params'], saved['params']):
                for value in saved_state.get(index, {}).values():
                    if isinstance(value, torch.Tensor) and value.ndim > 0 and value.shape != param.shape:
                        return f'a parameter of shape {list(param.shape)} has saved state of shape {list(value.shape)}'
    except (KeyError, TypeError, AttributeError) as e:
        return f'unreadable optimizer state ({type(e).__name__}: {e})'
    return None


def restore_optimizer_states(phases, progress, same_architecture, rank=0):
    """Load the saved Adam states when the networks are the same architecture; one line either way."""
    targets = [('G_opt', phases[0].opt), ('D_opt', phases[-1].opt)]
    saved = [(name, opt, progress.get(name)) for name, opt in targets if progress.get(name) is not None]
    if not saved:
        return False
    reasons = [] if same_architecture else ['the network shapes differ from the snapshot']
    for name, opt, state in saved:
        why = optimizer_state_mismatch(opt, state)
        if why is not None:
            reasons.append(f'{name}: {why}')
    if reasons:
        if rank == 0:
            print(f'  Optimizer states not restored ({reasons[0]}); Adam starts fresh.')
        return False
    for _name, opt, state in saved:
        opt.load_state_dict(state)
    if rank == 0:
        print(f'  Optimizer states restored from the snapshot ({", ".join(name for name, _, _ in saved)}).')
    return True


def snapshot_progress(cur_nimg, cur_tick, batch_idx, augment_p, loss, phases):
    """What a snapshot records so that training continues exactly where it stopped."""
    return dict(cur_nimg=cur_nimg, cur_tick=cur_tick, batch_idx=batch_idx, augment_p=augment_p,
                pl_mean=float(loss.pl_mean) if hasattr(loss, 'pl_mean') else None,
                G_opt=_to_cpu(phases[0].opt.state_dict()), D_opt=_to_cpu(phases[-1].opt.state_dict()))


def build_snapshot(modules, training_set_kwargs, camera_stats, progress, num_gpus=1):
    """The snapshot dict: CPU copies of the networks plus the data options and the progress."""
    data = dnnlib.EasyDict(training_set_kwargs=dnnlib.EasyDict(training_set_kwargs), camera_stats=camera_stats)
    for name, module in modules:
        if module is not None:
            if num_gpus > 1:
                misc.check_ddp_consistency(module, ignore_regex=r'.*\.[^.]+_(avg|ema)')
            module = copy.deepcopy(module).eval().requires_grad_(False).cpu()
        data[name] = module
    data['progress'] = progress
    return data


def write_network_snapshot(run_dir, cur_nimg, snapshot_data):
    """Write the snapshot atomically under its run-directory name; returns the path."""
    path = rundir.snapshot_path(run_dir, cur_nimg)
    rundir.atomic_pickle(dict(snapshot_data), path)
    return path


# ----------------------------------------------------------------------------
# Setup steps of training_loop(), in the order it runs them.


def configure_torch(cudnn_benchmark):
    """Full float32 precision (no TF32, so CPU and GPU runs agree) and the gradient-fix ops that
    the regularizers' double backward needs."""
    torch.backends.cudnn.benchmark = cudnn_benchmark
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    conv2d_gradfix.enabled = True
    grid_sample_gradfix.enabled = True


def load_training_set(training_set_kwargs, data_loader_kwargs, rank=0):
    """(dataset, DataLoader options); rank 0 prints what the dataset holds."""
    if rank == 0:
        print('Loading training set...')
    training_set = dnnlib.util.construct_class_by_name(**training_set_kwargs)
    dl_kwargs = dict(data_loader_kwargs)
    if dl_kwargs.get('num_workers', 0) == 0:
        dl_kwargs.pop('prefetch_factor', None)  # the DataLoader refuses it without worker processes
    if rank == 0:
        camera_stats = training_set.camera_stats
        print()
        print('Num images: ', len(training_set))
        print('Image shape:', training_set.image_shape)
        print('Label shape:', training_set.label_shape)
        if camera_stats is not None:
            print('Camera yaw range (deg): [%.1f, %.1f], pitch range: [%.1f, %.1f], radius %.3f, focal %.4f' % (
                *camera_stats['yaw_range_deg'], *camera_stats['pitch_range_deg'],
                camera_stats['radius'], camera_stats['focal']))
        print()
    return training_set, dl_kwargs


def construct_networks(G_kwargs, D_kwargs, training_set, device, rank=0):
    """(G, D, G_ema) sized for the dataset, frozen until their phase trains them."""
    if rank == 0:
        print('Constructing networks...')
    common_kwargs = dict(c_dim=training_set.label_dim, img_resolution=training_set.resolution,
                         img_channels=training_set.num_channels)
    G = dnnlib.util.construct_class_by_name(**G_kwargs, **common_kwargs).train().requires_grad_(False).to(device)
    D = dnnlib.util.construct_class_by_name(**D_kwargs, **common_kwargs).train().requires_grad_(False).to(device)
    G_ema = copy.deepcopy(G).eval()
    return G, D, G_ema


def resume_networks(resume_pkl, G, D, G_ema, keep_progress=True, rank=0):
    """Copy the networks of `resume_pkl` (None: nothing to do) into G, D and G_ema.

    Returns (the snapshot's progress dict, or None when absent or not wanted; whether the
    architectures matched, which decides whether optimizer states may be restored).
    """
    if resume_pkl is None:
        return None, False
    if rank == 0:
        print(f'Resuming from "{resume_pkl}"')
    resume_data = load_snapshot(resume_pkl)
    same_architecture = restore_networks(resume_data, G, D, G_ema, rank=rank)
    progress = resume_data.get('progress')
    return (progress if keep_progress and isinstance(progress, dict) else None), same_architecture


def print_network_summaries(G, D, batch_gpu, device):
    """Layer tables of G and D (informative only: a network that cannot summarize still trains)."""
    z = torch.empty([batch_gpu, G.z_dim], device=device)
    c = torch.empty([batch_gpu, G.c_dim], device=device)
    if G.c_dim == LABEL_DIM:
        c = camera_label(np.zeros(batch_gpu), np.zeros(batch_gpu)).to(device)
    try:
        img = misc.print_module_summary(G, [z, c])
        misc.print_module_summary(D, [img, c])
    except Exception as e:  # summaries are informative only
        print(f'(network summary unavailable: {e})')


def setup_augmentation(augment_kwargs, augment_p, ada_target, progress, device):
    """(augment pipe or None, ADA sign collector or None); a resumed run continues at its saved p."""
    if augment_kwargs is None or not (augment_p > 0 or ada_target is not None):
        return None, None
    augment_pipe = dnnlib.util.construct_class_by_name(**augment_kwargs).train().requires_grad_(False).to(device)
    augment_pipe.p.copy_(torch.as_tensor(augment_p))
    if progress is not None and progress.get('augment_p') is not None:
        augment_pipe.p.copy_(torch.as_tensor(float(progress['augment_p'])))
    ada_stats = training_stats.Collector(regex='Loss/signs/real') if ada_target is not None else None
    return augment_pipe, ada_stats


def broadcast_from_rank0(modules):
    """Every rank starts from rank 0's weights and buffers."""
    for module in modules:
        if module is not None:
            for tensor in misc.params_and_buffers(module):
                torch.distributed.broadcast(tensor, src=0)


def build_loss(loss_kwargs, G, D, augment_pipe, progress, device, context=None):
    """The loss object with its terms (training/terms) built for this run (`context`); a resumed
    run continues with its saved path-length mean. Older runs' loss options are upgraded to terms."""
    kwargs = terms.upgrade_loss_kwargs(loss_kwargs)
    context = context if context is not None else terms.TermContext(device=device)
    kwargs['terms'] = terms.build_terms(kwargs.get('terms', []), G, D, context)
    loss = dnnlib.util.construct_class_by_name(device=device, G=G, D=D, augment_pipe=augment_pipe, **kwargs)
    if progress is not None and progress.get('pl_mean') is not None and hasattr(loss, 'pl_mean'):
        loss.pl_mean.fill_(float(progress['pl_mean']))
    return loss


def export_start_grids(run_dir, training_set, G, G_ema, batch_gpu, device, random_seed):
    """Write reals.png and fakes_init.png; returns (grid_size, z, c) that every fakes grid reuses."""
    print('Exporting sample images...')
    use_camera_grid = training_set.is_camera and G.c_dim == LABEL_DIM
    grid_size, grid_z, grid_c, reals = setup_snapshot_grid(training_set, training_set.camera_stats, use_camera_grid,
                                                           G.z_dim, random_seed=random_seed)
    if G.c_dim != grid_c.shape[1]:
        grid_c = torch.zeros([grid_z.shape[0], G.c_dim])
    save_image_grid(reals, os.path.join(run_dir, 'reals.png'), drange=[0, 255], grid_size=grid_size)
    images = generate_grid(G_ema, grid_z, grid_c, max(batch_gpu, 16), device)
    save_image_grid(images, os.path.join(run_dir, 'fakes_init.png'), drange=[-1, 1], grid_size=grid_size)
    return grid_size, grid_z, grid_c


class StatsLog:
    """Rank 0's stats.jsonl and, when TensorBoard is installed, its event files (other ranks: nothing)."""

    def __init__(self, run_dir, rank, start_time):
        self.jsonl = None
        self.tfevents = None
        self.start_time = start_time
        if rank != 0:
            return
        self.jsonl = os.path.join(run_dir, 'stats.jsonl')   # appended one whole line per tick
        try:
            import torch.utils.tensorboard as tensorboard
            self.tfevents = tensorboard.SummaryWriter(run_dir)
        except ImportError:
            pass  # TensorBoard is optional ('pip install tensorboard' to get event files)
        except Exception as err:
            print('Skipping tfevents export:', err)

    def write(self, stats_dict, metric_results, cur_nimg):
        """One jsonl line of this tick's statistics; scalars (and metric results) for TensorBoard."""
        timestamp = time.time()
        if self.jsonl is not None:
            atomic_io.append_line(self.jsonl, json.dumps(dict(stats_dict, timestamp=timestamp)))
        if self.tfevents is not None:
            global_step = int(cur_nimg / 1e3)
            walltime = timestamp - self.start_time
            for name, value in stats_dict.items():
                self.tfevents.add_scalar(name, value.mean, global_step=global_step, walltime=walltime)
            for name, value in metric_results.items():
                self.tfevents.add_scalar(f'Metrics/{name}', value, global_step=global_step, walltime=walltime)
            self.tfevents.flush()

    def close(self):
        if self.tfevents is not None:
            self.tfevents.close()


# ----------------------------------------------------------------------------
# Steps of one iteration and of one tick.


@dataclasses.dataclass
class LoopState:
    """The counters of a running loop (the first three are saved in snapshots) and the tick's clock."""
    cur_nimg: int                   # images shown so far, all ranks together
    cur_tick: int
    batch_idx: int                  # iterations so far: decides which lazy regularization phases run
    tick_start_nimg: int
    tick_start_time: float
    maintenance_time: float         # seconds between the previous tick's end and this tick's start

    @classmethod
    def start(cls, counters, start_time):
        """The state at the first iteration: fresh, or the counters of a resumed snapshot."""
        cur_nimg = int(counters.get('cur_nimg', 0))
        now = time.time()
        return cls(cur_nimg=cur_nimg, cur_tick=int(counters.get('cur_tick', -1)) + 1,
                   batch_idx=int(counters.get('batch_idx', 0)), tick_start_nimg=cur_nimg, tick_start_time=now,
                   maintenance_time=now - start_time)


def fetch_batch(iterator, training_set, num_phases, z_dim, batch_size, batch_gpu, num_gpus, device):
    """This rank's reals split into accumulation rounds, and latents/labels for every phase.

    Returns (real images, real labels, [per phase: latents], [per phase: labels]), each a list of
    per-round tensors. Generated labels are drawn from the dataset, so fakes follow its poses.
    """
    with torch.autograd.profiler.record_function('data_fetch'):
        real_img, real_c = next(iterator)
        real_img = (real_img.to(device).to(torch.float32) / 127.5 - 1).split(batch_gpu)
        real_c = real_c.to(device).to(torch.float32).split(batch_gpu)
        rank_batch = batch_size // num_gpus
        gen_z = torch.randn([num_phases * rank_batch, z_dim], device=device)
        gen_z = [phase_gen_z.split(batch_gpu) for phase_gen_z in gen_z.split(rank_batch)]
        gen_c = [training_set.get_label(np.random.randint(len(training_set))) for _ in range(num_phases * rank_batch)]
        gen_c = torch.from_numpy(np.stack(gen_c).astype(np.float32)).to(device)
        gen_c = [phase_gen_c.split(batch_gpu) for phase_gen_c in gen_c.split(rank_batch)]
    return real_img, real_c, gen_z, gen_c


def update_ema(G_ema, G, ema_kimg, ema_rampup, cur_nimg, batch_size):
    """Move G_ema toward G with a half-life of ema_kimg (shorter early in training with ramp-up)."""
    with torch.autograd.profiler.record_function('Gema'):
        ema_nimg = ema_kimg * 1000
        if ema_rampup is not None:
            ema_nimg = min(ema_nimg, cur_nimg * ema_rampup)
        ema_beta = 0.5 ** (batch_size / max(ema_nimg, 1e-8))
        with torch.no_grad():
            for p_ema, p in zip(G_ema.parameters(), G.parameters()):
                p_ema.copy_(p.lerp(p_ema, ema_beta))
            for b_ema, b in zip(G_ema.buffers(), G.buffers()):
                b_ema.copy_(b)


def adapt_augment_p(ada_stats, augment_pipe, ada_target, ada_kimg, adjust_nimg):
    """ADA: raise p when D is over-confident on reals (mean sign above target), lower it otherwise.
    `adjust_nimg` images have passed since the last adjustment."""
    ada_stats.update()
    signs = ada_stats['Loss/signs/real']
    if np.isfinite(signs):
        adjust = np.sign(signs - ada_target) * adjust_nimg / (ada_kimg * 1000)
        augment_pipe.p.copy_((augment_pipe.p + adjust).clamp(min=0))


def report_tick(state, total_nimg, start_time, aug_p, device, rank=0):
    """The tick's progress, timing and memory into training_stats, and as one line on rank 0.
    Returns the time at which the tick ended."""
    tick_end_time = time.time()
    tick_nimg = max(state.cur_nimg - state.tick_start_nimg, 1)
    sec_per_kimg = (tick_end_time - state.tick_start_time) / tick_nimg * 1e3
    eta = max(total_nimg - state.cur_nimg, 0) / 1e3 * sec_per_kimg
    rss, peak_rss, gpu_peak = memory_stats(device)
    report0 = training_stats.report0
    fields = []
    fields += [f"tick {report0('Progress/tick', state.cur_tick):<5d}"]
    fields += [f"kimg {report0('Progress/kimg', state.cur_nimg / 1e3):<8.3f}"]
    fields += [f"time {dnnlib.util.format_time(report0('Timing/total_sec', tick_end_time - start_time)):<12s}"]
    fields += [f"sec/tick {report0('Timing/sec_per_tick', tick_end_time - state.tick_start_time):<7.1f}"]
    fields += [f"sec/kimg {report0('Timing/sec_per_kimg', sec_per_kimg):<7.2f}"]
    fields += [f"ETA {dnnlib.util.format_time(eta):<12s}"]
    fields += [f"maintenance {report0('Timing/maintenance_sec', state.maintenance_time):<6.1f}"]
    fields += [f"cpumem {report0('Resources/cpu_mem_gb', rss):<6.2f}"]
    report0('Resources/peak_cpu_mem_gb', peak_rss)
    if gpu_peak is not None:
        fields += [f"gpumem {report0('Resources/peak_gpu_mem_gb', gpu_peak):<6.2f}"]
        torch.cuda.reset_peak_memory_stats()
    fields += [f"augment {report0('Progress/augment', aug_p):.3f}"]
    if device.type == 'cpu':     # the thread count adapts to other jobs (raycond.threads): show what it is now
        fields += [f"threads {report0('Resources/cpu_threads', torch.get_num_threads())}"]
    report0('Timing/total_hours', (tick_end_time - start_time) / (60 * 60))
    if rank == 0:
        print(' '.join(fields), flush=True)
    return tick_end_time


def evaluate_metrics(metrics, G, training_set_kwargs, run_dir, snapshot_pkl, results, num_gpus=1, rank=0,
                     device='cpu', on_batch=None):
    """Compute `metrics` for the snapshot's G, report them (rank 0) and merge them into `results`.
    on_batch() runs between the metrics' batches (the caller's thread policy).

    A metric that fails (e.g. detector weights not downloadable) is dropped and training goes on.
    Returns the metrics still enabled.
    """
    if rank == 0:
        print('Evaluating metrics...')
    enabled = list(metrics)
    for metric in list(metrics):
        try:
            result_dict = metric_main.calc_metric(metric=metric, G=G, dataset_kwargs=training_set_kwargs,
                                                  num_gpus=num_gpus, rank=rank, device=device, on_batch=on_batch)
        except Exception as e:  # e.g. detector weights not downloadable: keep training
            enabled.remove(metric)
            if rank == 0:
                print(f'Warning: metric {metric} failed and is disabled for this run: {type(e).__name__}: {e}',
                      flush=True)
            continue
        if rank == 0:
            metric_main.report_metric(result_dict, run_dir=run_dir, snapshot_pkl=snapshot_pkl)
        results.update(result_dict.results)
    return enabled


# ----------------------------------------------------------------------------


def training_loop(
    run_dir='.',                    # Output directory.
    training_set_kwargs={},         # Options for the training set.
    data_loader_kwargs={},          # Options for torch.utils.data.DataLoader.
    G_kwargs={},                    # Options for the generator network.
    D_kwargs={},                    # Options for the discriminator network.
    G_opt_kwargs={},                # Options for the generator optimizer.
    D_opt_kwargs={},                # Options for the discriminator optimizer.
    augment_kwargs=None,            # Options for the augmentation pipeline (None = disable).
    loss_kwargs={},                 # Options for the loss function.
    metrics=[],                     # Metrics to evaluate at network snapshots.
    random_seed=0,                  # Global random seed.
    num_gpus=1,                     # Number of processes (ranks) taking part.
    rank=0,                         # Rank of this process in [0, num_gpus).
    device='cpu',                   # torch device of this rank.
    batch_size=4,                   # Total batch size for one training iteration.
    batch_gpu=4,                    # Images per rank per accumulation round.
    ema_kimg=10,                    # Half-life of the generator EMA.
    ema_rampup=0.05,                # EMA ramp-up coefficient (None = no ramp-up).
    G_reg_interval=4,               # How often to run path-length regularization (None = with main).
    D_reg_interval=16,              # How often to run R1 (None = with main).
    augment_p=0,                    # Initial augmentation probability.
    ada_target=None,                # ADA target value (None = fixed p).
    ada_interval=4,                 # How often to adjust p.
    ada_kimg=500,                   # ADA speed: kimg for p to go from 0 to 1.
    total_kimg=25000,               # Total length of training, in thousands of images.
    kimg_per_tick=4,                # Progress line interval.
    image_snapshot_ticks=50,        # How often to save image grids (None = never).
    network_snapshot_ticks=50,      # How often to save network snapshots (None = never).
    resume_pkl=None,                # Snapshot to resume from (path or URL).
    resume_progress=True,           # Restore optimizer states (if shapes match), augment p, pl_mean.
    resume_counters=True,           # Continue the snapshot's kimg/tick/batch counters (False: count from 0).
    cudnn_benchmark=True,           # Enable torch.backends.cudnn.benchmark?
    progress_fn=None,               # Callback(cur_nimg, total_nimg) after every iteration and metric batch.
    abort_fn=None,                  # Callback() -> bool: stop training early.
):
    """Train; returns dict(G=..., D=..., G_ema=..., cur_nimg=...) of this rank at the end."""
    opts = dnnlib.EasyDict(locals())      # this call's options, for the helpers below
    start_time = time.time()
    opts.device = torch.device(device)
    np.random.seed(random_seed * num_gpus + rank)
    torch.manual_seed(random_seed * num_gpus + rank)
    configure_torch(cudnn_benchmark)
    assert batch_size % num_gpus == 0 and (batch_size // num_gpus) % batch_gpu == 0
    run = setup_run(opts, start_time)

    # Train.
    total_nimg = int(total_kimg * 1000)
    state = LoopState.start(run.progress if (run.progress is not None and resume_counters) else {}, start_time)
    if rank == 0:
        print(f'Training for {total_kimg:g} kimg (starting at {state.cur_nimg / 1000:g} kimg)...')
        print()
    first_iteration = state.cur_nimg == 0  # a fresh run reports (and snapshots) after its first batch
    run.data = start_random_streams(run.training_set, random_seed, num_gpus, rank, state.cur_nimg, batch_size,
                                    run.dl_kwargs)
    if progress_fn is not None:
        progress_fn(state.cur_nimg, total_nimg)
    done = state.cur_nimg >= total_nimg
    while not done:
        train_step(opts, run, state)
        if progress_fn is not None:
            progress_fn(state.cur_nimg, total_nimg)
        done = (state.cur_nimg >= total_nimg)
        if (not done) and (not first_iteration) and (state.cur_nimg < state.tick_start_nimg + kimg_per_tick * 1000):
            continue
        first_iteration = False
        done = end_tick(opts, run, state, done, total_nimg, start_time)

    run.stats_log.close()
    if rank == 0:
        print()
        print('Exiting...')
    return dict(G=run.G, D=run.D, G_ema=run.G_ema, augment_pipe=run.augment_pipe, cur_nimg=state.cur_nimg)


def setup_run(o, start_time):
    """Everything a run needs before its first step: data, networks (resumed), augmentation, the
    loss with its terms, the phases with their optimizers, the fixed grid and the logs."""
    run = dnnlib.EasyDict(metrics=list(o.metrics), metric_results=dict())
    run.training_set, run.dl_kwargs = load_training_set(o.training_set_kwargs, o.data_loader_kwargs, rank=o.rank)
    run.G, run.D, run.G_ema = construct_networks(o.G_kwargs, o.D_kwargs, run.training_set, o.device, rank=o.rank)
    run.progress, same_architecture = resume_networks(o.resume_pkl, run.G, run.D, run.G_ema,
                                                      keep_progress=o.resume_progress, rank=o.rank)
    if o.rank == 0:
        print_network_summaries(run.G, run.D, o.batch_gpu, o.device)
    run.augment_pipe, run.ada_stats = setup_augmentation(o.augment_kwargs, o.augment_p, o.ada_target, run.progress,
                                                         o.device)
    if o.num_gpus > 1:
        broadcast_from_rank0([run.G, run.D, run.G_ema, run.augment_pipe])
    if o.rank == 0:
        print('Setting up training phases...')
    run.loss = build_loss(o.loss_kwargs, run.G, run.D, run.augment_pipe, run.progress, o.device,
                          terms.TermContext(device=o.device, run_dir=o.run_dir, training_set=run.training_set,
                                            training_set_kwargs=o.training_set_kwargs, rank=o.rank,
                                            num_gpus=o.num_gpus, resume_pkl=o.resume_pkl))
    run.phases = build_phases(run.G, run.D, o.G_opt_kwargs, o.D_opt_kwargs, o.G_reg_interval, o.D_reg_interval)
    if run.progress is not None:
        restore_optimizer_states(run.phases, run.progress, same_architecture, rank=o.rank)
    run.grid_size = run.grid_z = run.grid_c = None
    if o.rank == 0:
        run.grid_size, run.grid_z, run.grid_c = export_start_grids(o.run_dir, run.training_set, run.G, run.G_ema,
                                                                   o.batch_gpu, o.device, o.random_seed)
        print('Initializing logs...')
    run.stats_collector = training_stats.Collector(regex='.*')
    run.stats_log = StatsLog(o.run_dir, o.rank, start_time)
    return run


def train_step(o, run, state):
    """One iteration: every phase on one batch, the EMA, the counters and the ADA probability."""
    batch = fetch_batch(run.data, run.training_set, len(run.phases), run.G.z_dim, o.batch_size, o.batch_gpu,
                        o.num_gpus, o.device)
    run_phases(run.phases, run.loss, state.batch_idx, *batch, num_gpus=o.num_gpus,
               num_rounds=o.batch_size // o.num_gpus // o.batch_gpu, cur_nimg=state.cur_nimg)
    update_ema(run.G_ema, run.G, o.ema_kimg, o.ema_rampup, state.cur_nimg, o.batch_size)
    state.cur_nimg += o.batch_size
    state.batch_idx += 1
    if run.ada_stats is not None and (state.batch_idx % o.ada_interval == 0):
        adapt_augment_p(run.ada_stats, run.augment_pipe, o.ada_target, o.ada_kimg, o.batch_size * o.ada_interval)


def end_tick(o, run, state, done, total_nimg, start_time):
    """The maintenance of a tick: progress line, abort check, image grid, snapshot and metrics,
    statistics; returns whether training is done (an abort ends it)."""
    aug_p = float(run.augment_pipe.p.cpu()) if run.augment_pipe is not None else 0.0
    tick_end_time = report_tick(state, total_nimg, start_time, aug_p, o.device, rank=o.rank)
    if (not done) and (o.abort_fn is not None) and o.abort_fn():
        done = True
        if o.rank == 0:
            print()
            print('Aborting...')

    if o.rank == 0 and o.image_snapshot_ticks is not None and (done or state.cur_tick % o.image_snapshot_ticks == 0):
        images = generate_grid(run.G_ema, run.grid_z, run.grid_c, max(o.batch_gpu, 16), o.device)
        save_image_grid(images, rundir.snapshot_path(o.run_dir, state.cur_nimg, rundir.FAKES_PREFIX,
                                                     rundir.FAKES_EXT), drange=[-1, 1], grid_size=run.grid_size)

    resume_point = o.network_snapshot_ticks is not None and (done or state.cur_tick % o.network_snapshot_ticks == 0)
    if resume_point:
        snapshot_data = build_snapshot([('G', run.G), ('D', run.D), ('G_ema', run.G_ema),
                                        ('augment_pipe', run.augment_pipe)],
                                       o.training_set_kwargs, run.training_set.camera_stats, num_gpus=o.num_gpus,
                                       progress=snapshot_progress(state.cur_nimg, state.cur_tick, state.batch_idx,
                                                                  aug_p, run.loss, run.phases))
        snapshot_pkl = write_network_snapshot(o.run_dir, state.cur_nimg, snapshot_data) if o.rank == 0 else None
        if run.metrics:
            run.metrics = evaluate_metrics(run.metrics, snapshot_data['G_ema'], o.training_set_kwargs, o.run_dir,
                                           snapshot_pkl, run.metric_results, num_gpus=o.num_gpus, rank=o.rank,
                                           device=o.device, on_batch=o.progress_fn and (
                                               lambda: o.progress_fn(state.cur_nimg, total_nimg)))
        del snapshot_data

    # Collect statistics (all ranks take part in the reduction) and log them.
    run.stats_collector.update()
    run.stats_log.write(run.stats_collector.as_dict(), run.metric_results, state.cur_nimg)

    # A run resumed from this snapshot starts its random streams here: so does this one.
    if resume_point and not done:
        run.data = start_random_streams(run.training_set, o.random_seed, o.num_gpus, o.rank, state.cur_nimg,
                                        o.batch_size, run.dl_kwargs)
        if run.ada_stats is not None:
            run.ada_stats.update()

    # Next tick.
    state.cur_tick += 1
    state.tick_start_nimg = state.cur_nimg
    state.tick_start_time = time.time()
    state.maintenance_time = state.tick_start_time - tick_end_time
    return done

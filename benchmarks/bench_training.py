"""Training speed benchmark: s/kimg and peak memory of the StyleGAN2-ADA training iteration.

Runs the same phases as train.py (Gmain, Greg every 4, Dmain, Dreg every 16, G_ema update,
colour ADA at p = 0.2) on random images with random cameras, without writing a run directory.
Prints a table; never asserts times.

\b
  python benchmarks/bench_training.py --res=32,64 --batch=32 --cbase=8192 --cmax=256 --map-depth=2
  python benchmarks/bench_training.py --res=256,512 --batch=32 --device=cuda
  python benchmarks/bench_training.py --res=64 --cbase=2048 --cmax=64 --threads=1 --compare-fp32 --repeats=3
  python benchmarks/bench_training.py --published ~/src/stylegan2-ada-pytorch --res=64 --cbase=2048 --cmax=64 --threads=1 --repeats=3

Precision as train.py chooses it: fp16 layers on CUDA, bfloat16 layers on a CPU with native bfloat16
(raycond.precision), float32 elsewhere or with --fp32. --compare-fp32 times that against --fp32,
alternating, and prints the ratio of the best times (wall and process CPU time; with --threads=1 on
a shared machine the CPU time is the steadier figure).

--published DIR times NVIDIA's published StyleGAN2 training iteration from a stylegan2-ada-pytorch
checkout (nothing of it is in this repository) side by side with this code's --cfg=stylegan2 (or
--cfg=raycond2) in its default precision and with --fp32: one process each, alternating, best of --repeats, on the
CPU, where the published code has no fp16 (num_fp16_res=0) and its ops run their reference paths.
"""

import copy
import json
import os
import resource
import sys
import time

import click

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from raycond import runtime  # noqa: E402  (first: it chooses OpenMP's wait policy before torch loads)

import numpy as np  # noqa: E402
import torch  # noqa: E402

import dnnlib  # noqa: E402
from raycond import precision  # noqa: E402
from raycond.camera import LABEL_DIM, camera_label  # noqa: E402
from training.augment import AUGPIPE_SPECS  # noqa: E402
from training.terms import pose as pose_term  # noqa: E402
from training.terms import pose_negatives as negatives_term  # noqa: E402
from training.terms import pose_reader  # noqa: E402
from training.training_loop import build_phases, run_phases  # noqa: E402
from benchmarks.published_runs import ISOLATE_CHECKOUT, best_of_rotations  # noqa: E402


def _peak_cpu_gib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def bench_one(cfg, res, batch, batch_gpu, device, cbase, cmax, map_depth, iters, fp32, gamma=1.0,
              pose_negatives=0.0, pose_loss=0.0):
    """Time `iters` training iterations after one warm-up; returns a dict of results."""
    device = torch.device(device)
    fp16 = precision.layer_dtype(device, fp32) != torch.float32   # train.py's rule: fp16 on CUDA, bf16 on some CPUs
    common = dict(c_dim=LABEL_DIM if cfg != 'stylegan2' else 0, img_resolution=res, img_channels=3)
    net = dict(channel_base=cbase, channel_max=cmax, num_fp16_res=4 if fp16 else 0, conv_clamp=256 if fp16 else None)
    G_kwargs = dict(class_name='training.networks_stylegan2.Generator' if cfg == 'stylegan2' else
                    'training.networks_raycond2.Generator', z_dim=512, w_dim=512,
                    mapping_kwargs=dict(num_layers=map_depth), **net)
    if cfg == 'posecond2':
        G_kwargs.update(embedding='none', camera_in_mapping=True)
    D_kwargs = dict(class_name='training.networks_raycond2.Discriminator' if cfg != 'stylegan2' else
                    'training.networks_stylegan2.Discriminator', epilogue_kwargs=dict(mbstd_group_size=4), **net)
    torch.manual_seed(0)
    G = dnnlib.util.construct_class_by_name(**G_kwargs, **common).train().requires_grad_(False).to(device)
    D = dnnlib.util.construct_class_by_name(**D_kwargs, **common).train().requires_grad_(False).to(device)
    G_ema = copy.deepcopy(G).eval()
    augment_pipe = dnnlib.util.construct_class_by_name(class_name='training.augment.AugmentPipe',
                                                       **AUGPIPE_SPECS['color']).train().to(device)
    augment_pipe.p.fill_(0.2)
    terms = []
    if pose_negatives > 0:
        terms.append(negatives_term.PoseNegativesTerm(pose_negatives, G=G, D=D))
    if pose_loss > 0:  # an untrained reader of the real one's shape costs the same
        reader = pose_reader.build(pose_reader.CONFIG).eval().requires_grad_(False).to(device)
        terms.append(pose_term.PoseTerm(pose_loss, G=G, D=D, reader=reader))
    loss = dnnlib.util.construct_class_by_name(class_name='training.loss.StyleGAN2Loss', device=device, G=G, D=D,
                                               augment_pipe=augment_pipe, r1_gamma=gamma, terms=terms)
    opt = dict(class_name='torch.optim.Adam', lr=0.002, betas=[0, 0.99], eps=1e-8)
    phases = build_phases(G, D, opt, opt, G_reg_interval=4, D_reg_interval=16)
    num_rounds = batch // batch_gpu
    rnd = np.random.RandomState(0)
    c_all = camera_label(rnd.uniform(-30, 30, 256), rnd.uniform(-15, 15, 256)).to(device)
    if cfg == 'stylegan2':
        c_all = torch.zeros([256, 0], device=device)

    def sample_c(n):
        return c_all[torch.randint(0, c_all.shape[0], [n])]

    def step(batch_idx):
        real = (torch.rand([batch, 3, res, res], device=device) * 2 - 1).split(batch_gpu)
        real_c = sample_c(batch).split(batch_gpu)
        gen_z = [z.split(batch_gpu) for z in torch.randn([len(phases) * batch, G.z_dim], device=device).split(batch)]
        gen_c = [c.split(batch_gpu) for c in sample_c(len(phases) * batch).split(batch)]
        run_phases(phases, loss, batch_idx, real, real_c, gen_z, gen_c, num_rounds=num_rounds)
        with torch.no_grad():
            for p_ema, p in zip(G_ema.parameters(), G.parameters()):
                p_ema.copy_(p.lerp(p_ema, 0.99))

    def sync():
        if device.type == 'cuda':
            torch.cuda.synchronize(device)

    step(0)  # warm-up (includes both regularization phases)
    sync()
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(device)
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(1, iters + 1):  # batch_idx 1..iters: Greg every 4th, Dreg every 16th, as in training
        runtime.step()    # as train.py does once per iteration
        step(i)
    sync()
    sec, cpu_sec = time.perf_counter() - t0, time.process_time() - c0
    suffix = ('+neg' if pose_negatives > 0 else '') + ('+pl' if pose_loss > 0 else '')
    return dict(cfg=cfg + suffix, res=res, batch=batch, device=str(device),
                threads=torch.get_num_threads(),
                G_params=sum(p.numel() for p in G.parameters()), D_params=sum(p.numel() for p in D.parameters()),
                sec_per_iter=sec / iters, sec_per_kimg=sec / (iters * batch) * 1000,
                cpu_sec_per_kimg=cpu_sec / (iters * batch) * 1000, precision=precision.describe(device, not fp16),
                peak_gib=(torch.cuda.max_memory_allocated(device) / 2**30) if device.type == 'cuda' else _peak_cpu_gib())


# The published code's training iteration in a process of its own (its dnnlib, torch_utils and training
# packages shadow ours, as in bench_generator.py's PUBLISHED_WORKER), configured as bench_one's
# stylegan2: c_dim 0, mbstd group 4, colour augmentation at p = 0.2, Gmain / Greg every 4 (path length)
# / Dmain / Dreg every 16 (R1) with its StyleGAN2Loss, Adam as its training loop builds it, G_ema.
# argv: checkout, res, batch, batch_gpu, cbase, cmax, map_depth, iters, threads, gamma. Prints JSON.
PUBLISHED_WORKER = ISOLATE_CHECKOUT + r"""
import copy, inspect, json, os, resource, sys, time
import torch
res, batch, batch_gpu, cbase, cmax, map_depth, iters, threads = map(int, sys.argv[2:10])
gamma = float(sys.argv[10])
if threads > 0:
    torch.set_num_threads(threads)
if not all(os.path.isfile(os.path.join(path, 'training', n)) for n in ('networks.py', 'loss.py', 'augment.py')):
    sys.exit(f'{path}: no training/networks.py, loss.py and augment.py (a stylegan2-ada-pytorch checkout)')
from torch_utils import misc
from torch_utils.ops import conv2d_gradfix
from training import augment, networks
from training.loss import StyleGAN2Loss
if 'G_mapping' not in inspect.signature(StyleGAN2Loss.__init__).parameters:
    sys.exit(f'{path}: training/loss.py is not stylegan2-ada-pytorch\'s (StyleGAN2Loss takes no G_mapping)')
conv2d_gradfix.enabled = True   # as its training loop sets it (no effect off CUDA)
device = torch.device('cpu')
net = dict(channel_base=cbase, channel_max=cmax, num_fp16_res=0, conv_clamp=None)   # its --fp32: no fp16 on a CPU
torch.manual_seed(0)
G = networks.Generator(512, 0, 512, res, 3, mapping_kwargs=dict(num_layers=map_depth), synthesis_kwargs=net)
G = G.train().requires_grad_(False)
D = networks.Discriminator(0, res, 3, epilogue_kwargs=dict(mbstd_group_size=4), **net).train().requires_grad_(False)
G_ema = copy.deepcopy(G).eval()
augment_pipe = augment.AugmentPipe(brightness=1, contrast=1, lumaflip=1, hue=1, saturation=1).train()
augment_pipe.p.fill_(0.2)
loss = StyleGAN2Loss(device=device, G_mapping=G.mapping, G_synthesis=G.synthesis, D=D, augment_pipe=augment_pipe,
                     r1_gamma=gamma)
phases = []   # (name, module, opt, interval); lazy regularization scales lr and betas by c = interval / (interval + 1)
for name, module, interval in (('G', G, 4), ('D', D, 16)):
    c = interval / (interval + 1)
    opt = torch.optim.Adam(module.parameters(), lr=0.002 * c, betas=(0 ** c, 0.99 ** c), eps=1e-8)
    phases += [(name + 'main', module, opt, 1), (name + 'reg', module, opt, interval)]
rounds = batch // batch_gpu

def step(batch_idx):
    real = (torch.rand([batch, 3, res, res]) * 2 - 1).split(batch_gpu)
    real_c = torch.zeros([batch, 0]).split(batch_gpu)
    all_z = [z.split(batch_gpu) for z in torch.randn([len(phases) * batch, 512]).split(batch)]
    all_c = [c.split(batch_gpu) for c in torch.zeros([len(phases) * batch, 0]).split(batch)]
    for (name, module, opt, interval), gen_z, gen_c in zip(phases, all_z, all_c):
        if batch_idx % interval != 0:
            continue
        opt.zero_grad(set_to_none=True)
        module.requires_grad_(True)
        for i, (img, img_c, z, z_c) in enumerate(zip(real, real_c, gen_z, gen_c)):
            loss.accumulate_gradients(phase=name, real_img=img, real_c=img_c, gen_z=z, gen_c=z_c,
                                      sync=(i == rounds - 1), gain=interval)
        module.requires_grad_(False)
        for p in module.parameters():
            if p.grad is not None:
                misc.nan_to_num(p.grad, nan=0, posinf=1e5, neginf=-1e5, out=p.grad)
        opt.step()
    with torch.no_grad():
        for p_ema, p in zip(G_ema.parameters(), G.parameters()):
            p_ema.copy_(p.lerp(p_ema, 0.99))
        for b_ema, b in zip(G_ema.buffers(), G.buffers()):
            b_ema.copy_(b)

step(0)   # warm-up (includes both regularization phases), then batch_idx 1..iters as bench_one
t0, c0 = time.perf_counter(), time.process_time()
for i in range(1, iters + 1):
    step(i)
sec, cpu_sec = time.perf_counter() - t0, time.process_time() - c0
print(json.dumps(dict(sec_per_iter=sec / iters, sec_per_kimg=sec / (iters * batch) * 1000,
                      cpu_sec_per_kimg=cpu_sec / (iters * batch) * 1000, threads=torch.get_num_threads(),
                      G_params=sum(p.numel() for p in G.parameters()), D_params=sum(p.numel() for p in D.parameters()),
                      peak_gib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)))
"""


def compare_published(published, res, batch, batch_gpu, cbase, cmax, map_depth, iters, repeats, num_threads,
                      cfg='stylegan2'):
    """Best s/kimg (wall, process CPU) of the published code, this code's `cfg` in its default
    precision and with --fp32: one process each, in an order that rotates every repeat (so that a
    change of load hits all three). Returns ({'published': s, 'default': s, 'fp32': s}, same for CPU)."""
    common = [f'--cfg={cfg}', f'--res={res}', f'--batch={batch}', f'--batch-gpu={batch_gpu}', '--device=cpu',
              f'--cbase={cbase}', f'--cmax={cmax}', f'--map-depth={map_depth}', f'--iters={iters}',
              f'--threads={num_threads}', '--json']
    cmds = {
        'published': [sys.executable, '-c', PUBLISHED_WORKER, os.path.abspath(os.path.expanduser(published)), str(res),
                      str(batch), str(batch_gpu), str(cbase), str(cmax), str(map_depth), str(iters), str(num_threads),
                      '1.0'],   # bench_one's gamma
        'default': [sys.executable, os.path.abspath(__file__), *common],
        'fp32': [sys.executable, os.path.abspath(__file__), *common, '--fp32'],
    }
    def report(i, k, r):
        click.echo(f"  {res}x{res} repeat {i}: {k} {r['sec_per_kimg']:.1f} s/kimg "
                   f"(process CPU {r['cpu_sec_per_kimg']:.1f}, threads {r['threads']})", err=True)
    try:
        return best_of_rotations(cmds, repeats, 'sec_per_kimg', 'cpu_sec_per_kimg', report)
    except RuntimeError as e:
        raise click.ClickException(str(e)) from None


def format_published(rows, batch, batch_gpu, cbase, cmax, map_depth, iters, repeats, num_threads, cfg='stylegan2'):
    """Markdown table of compare_published's results: a wall-time and a process-CPU row per resolution."""
    lines = [f"CPU, torch {torch.__version__}, threads {num_threads or 'automatic'}, batch {batch} "
             f"(batch-gpu {batch_gpu}), cbase {cbase}, cmax {cmax}, map depth {map_depth}, {iters} iterations, best of "
             f"{repeats} alternating processes; this code: --cfg={cfg}, default = {precision.describe('cpu')}; "
             f"published: fp32; ratio = this code / published (below 1: this code is faster)",
             '', '| resolution | time | published s/kimg | this code, default s/kimg | ratio | this code, --fp32 s/kimg '
             '| ratio |', '|---|---|---|---|---|---|---|']
    for res, (best, cpu) in rows:
        for label, t in (('wall', best), ('process CPU', cpu)):
            lines.append(f"| {res}x{res} | {label} | {t['published']:.1f} | {t['default']:.1f} | "
                         f"{t['default'] / t['published']:.2f} | {t['fp32']:.1f} | {t['fp32'] / t['published']:.2f} |")
    return '\n'.join(lines)


@click.command(help=__doc__)
@click.option('--cfg', type=click.Choice(['raycond2', 'stylegan2', 'posecond2']), default=None,
              help='Network config (as in train.py)  [default: raycond2; stylegan2 with --published]')
@click.option('--res', default='32,64', show_default=True, help='Comma-separated resolutions')
@click.option('--batch', type=click.IntRange(min=1), default=32, show_default=True, help='Total batch size')
@click.option('--batch-gpu', type=click.IntRange(min=1), default=None, help='Images per accumulation round [default: batch]')
@click.option('--device', type=click.Choice(['auto', 'cpu', 'cuda']), default='auto', show_default=True,
              help='Device (auto: cuda if available, else cpu)')
@click.option('--cbase', type=click.IntRange(min=1), default=8192, show_default=True, help='Capacity multiplier')
@click.option('--cmax', type=click.IntRange(min=1), default=256, show_default=True, help='Max. feature maps')
@click.option('--map-depth', type=click.IntRange(min=1), default=2, show_default=True, help='Mapping network depth')
@click.option('--iters', type=click.IntRange(min=1), default=16, show_default=True,
              help='Timed iterations (16 covers one full lazy-regularization cycle)')
@click.option('--threads', 'num_threads', type=click.IntRange(min=0), default=0, show_default=True, help=runtime.THREADS_HELP)
@click.option('--fp32', is_flag=True, help=precision.FP32_HELP)
@click.option('--compare-fp32', is_flag=True, help='Time the default precision and --fp32 alternately; print their ratio.')
@click.option('--repeats', type=click.IntRange(min=1), default=1, show_default=True,
              help='Runs of each configuration (the table shows every run; the ratio uses the best of each).')
@click.option('--pose-negatives', type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="train.py's --term=pose-negatives:W (one more D pass on the reals); the cfg column reads '+neg'")
@click.option('--pose-loss', type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="train.py's --term=pose:W (the reader on each generated image and its mirror); the cfg column reads '+pl'")
@click.option('--published', metavar='DIR', default=None,
              help='A stylegan2-ada-pytorch checkout: time its training iteration, this code (--cfg, stylegan2 unless raycond2 is given) and '
                   'this code with --fp32 in alternating processes on the CPU; print a markdown table.')
@click.option('--json', 'as_json', is_flag=True, default=False, hidden=True,
              help='Print each result as one JSON line (used by --published).')
def main(cfg, res, batch, batch_gpu, device, cbase, cmax, map_depth, iters, num_threads, fp32, compare_fp32, repeats,
         pose_negatives, pose_loss, published, as_json):
    if published:
        if cfg == 'posecond2' or device == 'cuda' or fp32 or compare_fp32 or pose_negatives or pose_loss:
            raise click.ClickException('--published times the CPU, --cfg=stylegan2 or raycond2, in both precisions: '
                                       'drop --device=cuda, --fp32, --compare-fp32, --pose-negatives and --pose-loss')
        device = 'cpu'
        cfg = cfg or 'stylegan2'
    cfg = cfg or 'raycond2'
    if device == 'auto':
        device = 'cuda' if torch.cuda.is_available() else 'cpu'
    if device == 'cuda' and not torch.cuda.is_available():
        raise click.ClickException('--device=cuda given but CUDA is not available')
    runtime.start(num_threads)
    batch_gpu = batch_gpu or batch
    if batch % batch_gpu != 0 or batch_gpu % 4 != 0:
        raise click.ClickException(f'--batch={batch} must be a multiple of --batch-gpu={batch_gpu}, itself a multiple of 4')
    try:
        resolutions = [int(r) for r in res.split(',')]
    except ValueError:
        raise click.ClickException(f'--res must be a comma-separated list of integers, got {res!r}') from None
    if published:
        rows = [(r, compare_published(published, r, batch, batch_gpu, cbase, cmax, map_depth, iters, repeats,
                                      num_threads, cfg)) for r in resolutions]
        click.echo(format_published(rows, batch, batch_gpu, cbase, cmax, map_depth, iters, repeats, num_threads, cfg))
        return
    if not as_json:
        print(f'{"cfg":<22} {"res":>5} {"batch":>5} {"device":<7} {"thr":>3} {"G params":>9} {"D params":>9} '
              f'{"s/iter":>8} {"s/kimg":>9} {"CPU s/kimg":>10} {"peak GiB":>9}  precision')
    if (pose_negatives > 0 or pose_loss > 0) and cfg == 'stylegan2':  # this benchmark's stylegan2 has no cameras
        raise click.ClickException('--pose-negatives and --pose-loss need a camera-conditioned --cfg (raycond2, posecond2)')
    variants = [False, True] if compare_fp32 else [fp32]
    for r in resolutions:
        best, best_cpu = {}, {}
        for rep in range(repeats):
            for v in (variants if rep % 2 == 0 else variants[::-1]):   # alternate the order: same load for both
                out = bench_one(cfg, r, batch, batch_gpu, device, cbase, cmax, map_depth, iters, v,
                                pose_negatives=pose_negatives, pose_loss=pose_loss)
                best[v] = min(best.get(v, float('inf')), out['sec_per_kimg'])
                best_cpu[v] = min(best_cpu.get(v, float('inf')), out['cpu_sec_per_kimg'])
                if as_json:
                    print(json.dumps(out), flush=True)
                    continue
                print(f'{out["cfg"]:<22} {out["res"]:>5} {out["batch"]:>5} {out["device"]:<7} {out["threads"]:>3} '
                      f'{out["G_params"]:>9,} {out["D_params"]:>9,} {out["sec_per_iter"]:>8.3f} '
                      f'{out["sec_per_kimg"]:>9.1f} {out["cpu_sec_per_kimg"]:>10.1f} {out["peak_gib"]:>9.2f}  '
                      f'{out["precision"]}', flush=True)
        if compare_fp32:
            print(f'{r}x{r}: best s/kimg {best[False]:.1f} against {best[True]:.1f} with --fp32, ratio '
                  f'{best[False] / best[True]:.2f} (process CPU time: {best_cpu[False] / best_cpu[True]:.2f})', flush=True)


if __name__ == '__main__':
    main()

"""Generator speed benchmark: times mapping and synthesis separately for a randomly initialized
generator (--cfg stylegan2, raycond2 or raycond3-t, the names train.py uses) and prints ms/image,
images/s and peak memory; with or without the custom kernels (RAYCOND_OPS=cuda / ref).

Examples:
    python benchmarks/bench_generator.py --cfg raycond2 --res 256 --cbase 16384 --cmax 512 --batch 1
    python benchmarks/bench_generator.py --cfg raycond3-t --device cuda --compare-kernels
    python benchmarks/bench_generator.py --sweep --device cuda        # the table in docs/performance.md
    python benchmarks/bench_generator.py --sweep --device cpu --res 64 --cbase 512 --cmax 32 --iters 2
    python benchmarks/bench_generator.py --compare-fp32 --res 256 --rounds 5
    python benchmarks/bench_generator.py --published ~/src/stylegan2-ada-pytorch --res 256,512 --rounds 5

Precision as gen_images.py chooses it (raycond.precision): the networks' fp16 layers (the 4 highest
resolutions, as train.py builds them) run in fp16 on CUDA and in bfloat16 on a CPU with native
bfloat16, unless --fp32. --compare-fp32 times that against --fp32 on the same network, alternating.
--published DIR times NVIDIA's published StyleGAN2 code from a checkout (stylegan2-ada-pytorch's
training/networks.py or stylegan3's training/networks_stylegan2.py; nothing of it is in this
repository) side by side with this code: alternating processes, best of --rounds, ratio of the best.
"""

import contextlib
import json
import os
import resource
import statistics
import sys
import time

import click

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from raycond import threads  # noqa: E402

threads.prepare()  # before torch loads: the project's thread policy (raycond/threads.py)

import torch  # noqa: E402

from raycond import precision  # noqa: E402
from raycond.camera import LABEL_DIM, camera_label  # noqa: E402
from raycond.generate import force_fp32_for, parse_int_list  # noqa: E402
from benchmarks.published_runs import ISOLATE_CHECKOUT, best_of_rotations  # noqa: E402
from training import networks_stylegan2  # noqa: E402

CFGS = ('stylegan2', 'raycond2', 'raycond3-t')
CAMERA_CFGS = ('raycond2', 'raycond3-t')
KERNEL_MODES = {True: 'cuda', False: 'ref'}    # --kernels / --no-kernels -> RAYCOND_OPS


def build_generator(cfg, res, cbase, cmax, fp16, device):
    """Random generator of `cfg` (train.py's name and mapping depth: 8 layers for StyleGAN2-based
    configs, 2 for StyleGAN3-based ones), fp16 layers + conv clamp 256 as train.py sets them;
    eval mode, no grads."""
    common = dict(z_dim=512, w_dim=512, img_resolution=res, img_channels=3, channel_base=cbase,
                  channel_max=cmax, num_fp16_res=4 if fp16 else 0, conv_clamp=256)
    if cfg == 'stylegan2':
        G = networks_stylegan2.Generator(c_dim=0, **common)
    elif cfg == 'raycond2':
        from training import networks_raycond2
        G = networks_raycond2.Generator(c_dim=LABEL_DIM, embedding='plucker', **common)
    elif cfg == 'raycond3-t':
        from training import networks_raycond3
        G = networks_raycond3.Generator(c_dim=LABEL_DIM, embedding='plucker', mapping_kwargs=dict(num_layers=2), **common)
    else:
        raise ValueError(f"--cfg must be one of {', '.join(CFGS)}, got {cfg!r}")
    return G.eval().requires_grad_(False).to(device)


@contextlib.contextmanager
def ops_env(kernels):
    """RAYCOND_OPS=cuda (kernels required on CUDA tensors) or ref for the block; None leaves it as is.
    The ops read the variable on every call, so one process can time both."""
    if kernels is None:
        yield
        return
    old = os.environ.get('RAYCOND_OPS')
    os.environ['RAYCOND_OPS'] = KERNEL_MODES[bool(kernels)]
    try:
        yield
    finally:
        if old is None:
            os.environ.pop('RAYCOND_OPS', None)
        else:
            os.environ['RAYCOND_OPS'] = old


def make_inputs(G, cfg, batch, device):
    z = torch.randn([batch, G.z_dim], generator=torch.Generator().manual_seed(0)).to(device)
    if cfg in CAMERA_CFGS:
        c = torch.as_tensor(camera_label(20.0, -5.0), dtype=torch.float32).repeat(batch, 1).to(device)
    else:
        c = torch.zeros([batch, 0], device=device)
    return z, c


def tune_malloc():
    """glibc only: raise the mmap and trim thresholds to 1 GiB, so that freed activation buffers
    are reused from the heap instead of being returned to the OS and page-faulted in again."""
    import ctypes
    try:
        libc = ctypes.CDLL('libc.so.6')
    except OSError as e:
        raise ValueError(f'--mallopt needs glibc: {e}') from None
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    if not (libc.mallopt(M_MMAP_THRESHOLD, 1 << 30) and libc.mallopt(M_TRIM_THRESHOLD, 1 << 30)):
        raise ValueError('--mallopt: mallopt() refused the setting')


def peak_memory_mb(device):
    if device.type == 'cuda':
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _sync(device):
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def run_benchmark(cfg='raycond2', res=256, cbase=16384, cmax=512, batch=1, device='cpu', iters=10,
                  warmup=3, compile=False, fp16=False, channels_last=True, profile=0, kernels=None, G=None):
    """Time G.mapping and G.synthesis; return a dict of results (milliseconds are per call).
    `kernels`: True/False sets RAYCOND_OPS=cuda/ref while timing, None keeps the environment's.
    `G`: a generator from build_generator to reuse (sweeps time one network at several batches)."""
    device = torch.device(device)
    networks_stylegan2.CPU_CHANNELS_LAST = channels_last
    if G is None:
        G = build_generator(cfg, res, cbase, cmax, fp16, device)
    z, c = make_inputs(G, cfg, batch, device)
    force_fp32 = force_fp32_for(device, not fp16, G)
    takes_c = cfg in CAMERA_CFGS
    with ops_env(kernels):
        r = _time_generator(G, z, c, takes_c, force_fp32, device, iters, warmup, compile, profile)
    r.update(cfg=cfg, res=res, cbase=cbase, cmax=cmax, batch=batch, device=str(device), compile=compile, fp16=fp16,
             channels_last=channels_last, kernels=kernels, ops=os.environ.get('RAYCOND_OPS', 'auto') if kernels is None
             else KERNEL_MODES[bool(kernels)])
    return r


def _time_generator(G, z, c, takes_c, force_fp32, device, iters, warmup, compile, profile):
    batch = z.shape[0]

    def synth(ws):
        if takes_c:
            return G.synthesis(ws, c, noise_mode='const', force_fp32=force_fp32)
        return G.synthesis(ws, noise_mode='const', force_fp32=force_fp32)

    mapping, synthesis = G.mapping, synth
    if compile:
        mapping = torch.compile(G.mapping)
        synthesis = torch.compile(synth)

    map_ms, syn_ms, cpu_ms = [], [], []
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(device)
    # torch.compile guards on numpy constants fail inside inference_mode; no_grad works there.
    grad_ctx = torch.no_grad if compile else torch.inference_mode
    with grad_ctx():
        for it in range(warmup + iters):
            threads.adapt()   # as the tools do between images (raycond/threads.py)
            _sync(device)
            c0 = time.process_time()
            t0 = time.perf_counter()
            ws = mapping(z, c)
            _sync(device)
            t1 = time.perf_counter()
            img = synthesis(ws)
            _sync(device)
            t2 = time.perf_counter()
            c2 = time.process_time()
            if it >= warmup:
                map_ms.append((t1 - t0) * 1e3)
                syn_ms.append((t2 - t1) * 1e3)
                cpu_ms.append((c2 - c0) * 1e3)
        assert img.shape == (batch, 3, G.img_resolution, G.img_resolution)
        table = None
        if profile:
            from torch.profiler import ProfilerActivity, profile as tprofile
            acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == 'cuda' else [])
            with tprofile(activities=acts) as prof:
                for _ in range(profile):
                    synthesis(mapping(z, c))
                _sync(device)
            table = prof.key_averages().table(sort_by='self_cpu_time_total', row_limit=25)

    total = [m + s for m, s in zip(map_ms, syn_ms)]
    best = min(total)
    med = statistics.median(total)
    return dict(mapping_ms=statistics.median(map_ms), synthesis_ms=statistics.median(syn_ms),
                total_ms_per_image=med / batch, best_ms_per_image=best / batch,
                images_per_s=1e3 * batch / med, cpu_ms_per_image=min(cpu_ms) / batch, peak_mem_mb=peak_memory_mb(device),
                num_params=sum(p.numel() for p in G.parameters()), profile_table=table)


def format_table(r):
    rows = [
        ('config', f"{r['cfg']} {r['res']}x{r['res']} cbase={r['cbase']} cmax={r['cmax']} batch={r['batch']}"),
        ('device', f"{r['device']} (threads={torch.get_num_threads()}, torch {torch.__version__})"),
        ('options', f"compile={r['compile']} {precision.describe(r['device'], not r['fp16'])} "
                    f"cpu_channels_last={r['channels_last']} "
                    f"mallopt={r.get('mallopt', False)} RAYCOND_OPS={r['ops']}"),
        ('parameters', f"{r['num_params'] / 1e6:.2f} M"),
        ('mapping ms (median/call)', f"{r['mapping_ms']:.2f}"),
        ('synthesis ms (median/call)', f"{r['synthesis_ms']:.2f}"),
        ('total ms/image (median)', f"{r['total_ms_per_image']:.2f}"),
        ('total ms/image (best)', f"{r['best_ms_per_image']:.2f}"),
        ('images/s (median)', f"{r['images_per_s']:.2f}"),
        ('process CPU ms/image (best)', f"{r['cpu_ms_per_image']:.2f} (all threads; robust to other load when --threads 1)"),
        ('peak memory MiB', f"{r['peak_mem_mb']:.0f} ({'CUDA max allocated' if r['device'].startswith('cuda') else 'process RSS'})"),
    ]
    width = max(len(k) for k, _ in rows)
    return '\n'.join(f'{k:<{width}}  {v}' for k, v in rows)


def kernel_sweep(cfgs, resolutions, batches, device, cbase, cmax, iters, warmup, fp16, channels_last=True,
                    echo=print):
    """Time every cfg x resolution x batch with the kernels (RAYCOND_OPS=cuda) and with the
    references (RAYCOND_OPS=ref); one network per cfg and resolution. Returns a list of row dicts
    (ms/image, None where the kernels are unavailable) and prints progress through `echo`."""
    rows = []
    for cfg in cfgs:
        for res in resolutions:
            G = build_generator(cfg, res, cbase, cmax, fp16, torch.device(device))
            for batch in batches:
                row = dict(cfg=cfg, res=res, batch=batch, kernels=None, reference=None, note='')
                for kernels in (True, False):
                    try:
                        r = run_benchmark(cfg=cfg, res=res, cbase=cbase, cmax=cmax, batch=batch, device=device,
                                          iters=iters, warmup=warmup, fp16=fp16, channels_last=channels_last,
                                          kernels=kernels, G=G)
                        row['kernels' if kernels else 'reference'] = r['total_ms_per_image']
                    except RuntimeError as e:   # RAYCOND_OPS=cuda and the kernels did not build
                        row['note'] = str(e).splitlines()[0] if str(e) else type(e).__name__
                rows.append(row)
                echo(f"  {cfg} {res}x{res} batch {batch}: kernels {_ms(row['kernels'])}, "
                     f"reference {_ms(row['reference'])} ms/image")
            del G
            if torch.device(device).type == 'cuda':
                torch.cuda.empty_cache()
    return rows


def _ms(v):
    return 'unavailable' if v is None else f'{v:.2f}'


def format_sweep(rows, device, fp16, cbase, cmax, iters):
    """Markdown table (pasteable into docs/performance.md) of kernel_sweep's rows."""
    dev = torch.device(device)
    name = torch.cuda.get_device_name(dev) if dev.type == 'cuda' else 'CPU'
    lines = [f"device {device} ({name}), torch {torch.__version__}, {'fp16 layers' if fp16 else 'fp32'}, "
             f"cbase {cbase}, cmax {cmax}, median of {iters}, ms/image (mapping + synthesis)"]
    if dev.type != 'cuda':
        lines.append('note: off CUDA both columns run the reference ops (the CPU build of the kernels is slower; '
                     'docs/performance.md)')
    lines += ['', '| config | resolution | batch | kernels ms/image | reference ms/image | speed-up |',
              '|---|---|---|---|---|---|']
    for r in rows:
        k, ref = r['kernels'], r['reference']
        speedup = f'{ref / k:.2f}x' if k and ref and dev.type == 'cuda' else '-'   # off CUDA: same ops twice
        lines.append(f"| {r['cfg']} | {r['res']}x{r['res']} | {r['batch']} | {_ms(k)} | {_ms(ref)} | {speedup} |")
    notes = sorted({r['note'] for r in rows if r['note']})
    lines += [f'kernels unavailable: {n}' for n in notes]
    return '\n'.join(lines)


def time_against_fp32(cfg, res, cbase, cmax, batch, device, iters, warmup, rounds, channels_last=True, echo=print):
    """Best ms/image of one network (fp16 layers built in, as train.py builds them) in its default
    precision and with --fp32, alternating the order each round. Returns {False: ms, True: ms} (keys: fp32)."""
    G = build_generator(cfg, res, cbase, cmax, True, torch.device(device))
    best = {False: float('inf'), True: float('inf')}
    for i in range(rounds):
        for fp32 in ((False, True) if i % 2 == 0 else (True, False)):
            r = run_benchmark(cfg=cfg, res=res, cbase=cbase, cmax=cmax, batch=batch, device=device, iters=iters,
                              warmup=warmup, fp16=not fp32, channels_last=channels_last, G=G)
            best[fp32] = min(best[fp32], r['best_ms_per_image'])
            echo(f"  round {i + 1}: {'--fp32' if fp32 else 'default'} {r['best_ms_per_image']:.1f} ms/image")
    return best


# Times the published StyleGAN2 code in a process of its own (its dnnlib, torch_utils and training
# packages shadow ours). argv: checkout, res, cbase, cmax, batch, iters, warmup, threads. Prints JSON.
PUBLISHED_WORKER = ISOLATE_CHECKOUT + r"""
import importlib, inspect, json, os, statistics, sys, time
import torch
path, res, cbase, cmax, batch, iters, warmup, threads = sys.argv[1], *map(int, sys.argv[2:])
if threads > 0:
    torch.set_num_threads(threads)
names = [n for n in ('networks_stylegan2', 'networks') if os.path.isfile(os.path.join(path, 'training', n + '.py'))]
if not names:   # stylegan3's file, or stylegan2-ada-pytorch's
    sys.exit(f'{path}: no training/networks_stylegan2.py or training/networks.py (a StyleGAN2-ADA or StyleGAN3 checkout)')
module = importlib.import_module('training.' + names[0])
synthesis = dict(channel_base=cbase, channel_max=cmax, num_fp16_res=4, conv_clamp=256)
# The class as written, under persistence.persistent_class's wrapper (whose __init__ takes *args, **kwargs):
# stylegan2-ada-pytorch's takes synthesis_kwargs={} (a dict), stylegan3's **synthesis_kwargs.
cls = next((k for k in module.Generator.__mro__ if k.__module__ == module.__name__), module.Generator)
param = inspect.signature(cls.__init__).parameters.get('synthesis_kwargs')
if param is not None and param.kind is not param.VAR_KEYWORD:
    G = module.Generator(512, 0, 512, res, 3, synthesis_kwargs=synthesis)
else:
    G = module.Generator(512, 0, 512, res, 3, **synthesis)
G = G.eval().requires_grad_(False)
torch.manual_seed(0)
z, c = torch.randn([batch, 512]), torch.zeros([batch, 0])
total, cpu = [], []
with torch.inference_mode():
    for it in range(warmup + iters):
        t0, c0 = time.perf_counter(), time.process_time()
        G.synthesis(G.mapping(z, c), noise_mode='const', force_fp32=True)   # fp16 on a CPU would be emulated
        if it >= warmup:
            total.append((time.perf_counter() - t0) * 1e3)
            cpu.append((time.process_time() - c0) * 1e3)
print(json.dumps(dict(best_ms_per_image=min(total) / batch, total_ms_per_image=statistics.median(total) / batch,
                      cpu_ms_per_image=min(cpu) / batch, module=module.__name__)))
"""


def compare_published(published, cfg, res, cbase, cmax, batch, iters, warmup, rounds, num_threads, echo=print):
    """Best ms/image of the published StyleGAN2 code, this code in its default precision and with
    --fp32: one process each, in an order that rotates every round (so that a change of load hits
    all three). Returns {'published': ms, 'default': ms, 'fp32': ms} (best) and the same for CPU ms."""
    common = ['--cfg', cfg, '--res', str(res), '--cbase', str(cbase), '--cmax', str(cmax), '--batch', str(batch),
              '--iters', str(iters), '--warmup', str(warmup), '--threads', str(num_threads), '--device', 'cpu', '--json']
    cmds = {
        'published': [sys.executable, '-c', PUBLISHED_WORKER, os.path.abspath(os.path.expanduser(published)),
                      str(res), str(cbase), str(cmax), str(batch), str(iters), str(warmup), str(num_threads)],
        'default': [sys.executable, os.path.abspath(__file__), *common],
        'fp32': [sys.executable, os.path.abspath(__file__), *common, '--fp32'],
    }
    return best_of_rotations(cmds, rounds, 'best_ms_per_image', 'cpu_ms_per_image', lambda i, k, r: echo(
        f"  {res}x{res} round {i}: {k} {r['best_ms_per_image']:.1f} ms/image"))


def format_published(rows, cfg, cbase, cmax, batch, rounds, num_threads):
    """Markdown table of compare_published's results, one row per resolution."""
    dtype = precision.describe('cpu')
    lines = [f"CPU, torch {torch.__version__}, threads {num_threads or 'default'}, batch {batch}, cbase {cbase}, "
             f"cmax {cmax}, best of {rounds} alternating processes; this code: {cfg}, default = {dtype}",
             '', '| resolution | published StyleGAN2 ms | this code, default ms | ratio | this code, --fp32 ms | ratio '
             '| CPU-time ratio default / fp32 |', '|---|---|---|---|---|---|---|']
    for res, (best, cpu) in rows:
        lines.append(f"| {res}x{res} | {best['published']:.1f} | {best['default']:.1f} | "
                     f"{best['default'] / best['published']:.2f} | {best['fp32']:.1f} | "
                     f"{best['fp32'] / best['published']:.2f} | {cpu['default'] / cpu['published']:.2f} / "
                     f"{cpu['fp32'] / cpu['published']:.2f} |")
    return '\n'.join(lines)


@click.command()
@click.option('--cfg', type=click.Choice(CFGS), default='raycond2', show_default=True,
              help="Generator architecture to time (train.py's names). --sweep times all of them.")
@click.option('--res', 'res_list', default=None,
              help='Output resolution(s), powers of two >= 16, e.g. 256 or 256,512. Default: 256 (--sweep: 256,512).')
@click.option('--cbase', type=int, default=16384, show_default=True, help='channel_base of the synthesis network.')
@click.option('--cmax', type=int, default=512, show_default=True, help='channel_max of the synthesis network.')
@click.option('--batch', 'batch_list', default=None,
              help='Images per call, e.g. 1 or 1,8. Default: 1 (--sweep: 1,8).')
@click.option('--device', default='cpu', show_default=True, help="Torch device: 'cpu', 'cuda', 'cuda:1', ...")
@click.option('--iters', type=click.IntRange(min=1), default=10, show_default=True, help='Timed iterations.')
@click.option('--warmup', type=click.IntRange(min=0), default=3, show_default=True,
              help='Untimed warm-up iterations (the first call with the kernels also compiles or loads them).')
@click.option('--compile', 'use_compile', is_flag=True, default=False, help='Wrap mapping and synthesis in torch.compile.')
@click.option('--fp32', is_flag=True, default=False,
              help='Every layer in float32. Default: fp16 layers on CUDA (as gen_images.py); always fp32 off CUDA.')
@click.option('--kernels/--no-kernels', default=None,
              help='Time with the custom kernels (RAYCOND_OPS=cuda: an error if they do not build) or with the '
                   'reference ops (RAYCOND_OPS=ref). Default: RAYCOND_OPS as set (auto when unset).')
@click.option('--compare-kernels', is_flag=True, default=False,
              help='Time both, with and without the kernels, and print one row per configuration.')
@click.option('--sweep', is_flag=True, default=False,
              help='Time stylegan2, raycond2 and raycond3-t at every --res and --batch, with and without the '
                   'kernels; print a markdown table of ms/image.')
@click.option('--channels-last/--no-channels-last', default=True, show_default=True,
              help='Channels-last activations on the CPU (networks_stylegan2.CPU_CHANNELS_LAST).')
@click.option('--mallopt', 'use_mallopt', is_flag=True, default=False,
              help='Linux/glibc: keep freed large blocks in the heap (mallopt) so big activations are not '
                   're-faulted on every call.')
@click.option('--threads', 'num_threads', type=click.IntRange(min=0), default=0, show_default=True, help=threads.THREADS_HELP)
@click.option('--profile', type=click.IntRange(min=0), default=0, show_default=True,
              help='Also run N iterations under torch.profiler and print the top operators.')
@click.option('--compare-fp32', is_flag=True, default=False,
              help='Time the default precision and --fp32 on the same network (fp16 layers built in), alternating '
                   '--rounds times; print the best of each and their ratio.')
@click.option('--published', metavar='DIR', default=None,
              help='A checkout of the published StyleGAN2 code (stylegan2-ada-pytorch or stylegan3): time it, this '
                   'code and this code with --fp32 in alternating processes on the CPU; print a markdown table.')
@click.option('--rounds', type=click.IntRange(min=1), default=5, show_default=True,
              help='Rounds of --compare-fp32 / --published (the best of each side is kept).')
@click.option('--json', 'as_json', is_flag=True, default=False, hidden=True,
              help='Print the result as one JSON line (used by --published).')
@click.option('--verbose', is_flag=True, default=False, help='Show full tracebacks on errors.')
def main(cfg, res_list, cbase, cmax, batch_list, device, iters, warmup, use_compile, fp32, kernels, compare_kernels,
         sweep, channels_last, use_mallopt, num_threads, profile, compare_fp32, published, rounds, as_json, verbose):
    """Time the generator's mapping and synthesis networks (noise_mode='const')."""
    try:
        if use_mallopt:
            tune_malloc()
        threads.apply(num_threads)
        dev = torch.device(device)
        if dev.type == 'cuda' and not torch.cuda.is_available():
            raise ValueError(f'--device {device}: CUDA is not available on this machine (use --device cpu)')
        resolutions = parse_int_list(res_list or ('256,512' if sweep else '256'))
        batches = parse_int_list(batch_list or ('1,8' if sweep else '1'))
        bad = [r for r in resolutions if r < 16 or r & (r - 1)]
        if bad:
            raise ValueError(f'--res {res_list}: {bad[0]} is not a power of two >= 16 (e.g. 64, 256, 512)')
        if min(batches) < 1:
            raise ValueError(f'--batch {batch_list}: every batch size must be at least 1')
        fp16 = precision.layer_dtype(dev, fp32) != torch.float32   # these networks are ours: force_fp32_for's rule
        echo = lambda m: click.echo(m, err=True)  # noqa: E731
        if published:
            rows = [(r, compare_published(published, cfg, r, cbase, cmax, batches[0], iters, warmup, rounds,
                                          num_threads, echo=echo)) for r in resolutions]
            click.echo(format_published(rows, cfg, cbase, cmax, batches[0], rounds, num_threads))
            return
        if compare_fp32:
            for r in resolutions:
                best = time_against_fp32(cfg, r, cbase, cmax, batches[0], device, iters, warmup, rounds, channels_last, echo)
                click.echo(f"{cfg} {r}x{r} batch {batches[0]}: {precision.describe(dev)} {best[False]:.1f} ms/image, "
                           f"--fp32 {best[True]:.1f} ms/image, ratio {best[False] / best[True]:.2f} "
                           f"(best of {rounds}, threads {torch.get_num_threads()})")
            return
        if sweep or compare_kernels:
            if kernels is not None:
                raise ValueError('--kernels/--no-kernels pick one side; --sweep and --compare-kernels time both '
                                 '(drop one of the options)')
            if use_compile or profile:
                raise ValueError('--compile and --profile apply to single runs; drop them with --sweep/--compare-kernels')
            cfgs = CFGS if sweep else (cfg,)
            click.echo(f'Timing {len(cfgs) * len(resolutions) * len(batches)} configurations x 2 on {device}...',
                       err=True)
            rows = kernel_sweep(cfgs, resolutions, batches, device, cbase, cmax, iters, max(warmup, 1), fp16,
                                   channels_last, echo=lambda m: click.echo(m, err=True))
            click.echo(format_sweep(rows, device, fp16, cbase, cmax, iters))
            return
        if len(resolutions) > 1 or len(batches) > 1:
            raise ValueError('several --res or --batch values need --sweep or --compare-kernels')
        r = run_benchmark(cfg=cfg, res=resolutions[0], cbase=cbase, cmax=cmax, batch=batches[0], device=device,
                          iters=iters, warmup=warmup, compile=use_compile, fp16=fp16, channels_last=channels_last,
                          profile=profile, kernels=kernels)
        r['mallopt'] = use_mallopt
    except (ValueError, RuntimeError) as e:
        if verbose:
            raise
        raise click.ClickException(str(e).splitlines()[0] if str(e) else type(e).__name__)
    if as_json:
        click.echo(json.dumps({k: v for k, v in r.items() if k != 'profile_table'}))
        return
    click.echo(format_table(r))
    if r['profile_table']:
        click.echo(r['profile_table'])


if __name__ == '__main__':
    main()

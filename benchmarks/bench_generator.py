"""Generator speed benchmark: times mapping and synthesis separately for a randomly initialized
StyleGAN2 or ray-conditioned (raycond2) generator and prints ms/image, images/s and peak memory.

Example (the configuration recorded in docs/performance.md):
    python benchmarks/bench_generator.py --cfg raycond2 --res 256 --cbase 16384 --cmax 512 --batch 1
"""

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

from training import networks_stylegan2  # noqa: E402


def build_generator(cfg, res, cbase, cmax, fp16, device):
    """Random generator of the given config ('stylegan2' or 'raycond2'), eval mode, no grads."""
    common = dict(z_dim=512, w_dim=512, img_resolution=res, img_channels=3, channel_base=cbase,
                  channel_max=cmax, num_fp16_res=4 if fp16 else 0, conv_clamp=256)
    if cfg == 'stylegan2':
        G = networks_stylegan2.Generator(c_dim=0, **common)
    elif cfg == 'raycond2':
        from training import networks_raycond2
        G = networks_raycond2.Generator(c_dim=25, embedding='plucker', **common)
    else:
        raise click.ClickException(f"--cfg must be 'stylegan2' or 'raycond2', got {cfg!r}")
    return G.eval().requires_grad_(False).to(device)


def make_inputs(G, cfg, batch, device):
    z = torch.randn([batch, G.z_dim], generator=torch.Generator().manual_seed(0)).to(device)
    if cfg == 'raycond2':
        from raycond.camera import camera_label
        c = torch.as_tensor(camera_label(20.0, -5.0), dtype=torch.float32).reshape(1, 25).repeat(batch, 1).to(device)
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
                  warmup=3, compile=False, fp16=False, channels_last=True, profile=0):
    """Time G.mapping and G.synthesis; return a dict of results (milliseconds are per call)."""
    device = torch.device(device)
    networks_stylegan2.CPU_CHANNELS_LAST = channels_last
    G = build_generator(cfg, res, cbase, cmax, fp16, device)
    z, c = make_inputs(G, cfg, batch, device)
    force_fp32 = not fp16
    takes_c = cfg == 'raycond2'

    def synth(ws):
        if takes_c:
            return G.synthesis(ws, c, noise_mode='const', force_fp32=force_fp32)
        return G.synthesis(ws, noise_mode='const', force_fp32=force_fp32)

    mapping, synthesis = G.mapping, synth
    if compile:
        mapping = torch.compile(G.mapping)
        synthesis = torch.compile(synth)

    map_ms, syn_ms, cpu_ms = [], [], []
    # torch.compile guards on numpy constants fail inside inference_mode; no_grad works there.
    grad_ctx = torch.no_grad if compile else torch.inference_mode
    with grad_ctx():
        for it in range(warmup + iters):
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
        assert img.shape == (batch, 3, res, res)
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
    return dict(cfg=cfg, res=res, cbase=cbase, cmax=cmax, batch=batch, device=str(device),
                compile=compile, fp16=fp16, channels_last=channels_last,
                mapping_ms=statistics.median(map_ms), synthesis_ms=statistics.median(syn_ms),
                total_ms_per_image=med / batch, best_ms_per_image=best / batch,
                images_per_s=1e3 * batch / med, cpu_ms_per_image=min(cpu_ms) / batch, peak_mem_mb=peak_memory_mb(device),
                num_params=sum(p.numel() for p in G.parameters()), profile_table=table)


def format_table(r):
    rows = [
        ('config', f"{r['cfg']} {r['res']}x{r['res']} cbase={r['cbase']} cmax={r['cmax']} batch={r['batch']}"),
        ('device', f"{r['device']} (threads={torch.get_num_threads()}, torch {torch.__version__})"),
        ('options', f"compile={r['compile']} fp16={r['fp16']} cpu_channels_last={r['channels_last']} "
                    f"mallopt={r.get('mallopt', False)}"),
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


@click.command()
@click.option('--cfg', type=click.Choice(['stylegan2', 'raycond2']), default='raycond2', show_default=True,
              help='Generator architecture to time.')
@click.option('--res', type=int, default=256, show_default=True, help='Output resolution (power of two >= 4).')
@click.option('--cbase', type=int, default=16384, show_default=True, help='channel_base of the synthesis network.')
@click.option('--cmax', type=int, default=512, show_default=True, help='channel_max of the synthesis network.')
@click.option('--batch', type=click.IntRange(min=1), default=1, show_default=True, help='Images per call.')
@click.option('--device', default='cpu', show_default=True, help="Torch device: 'cpu', 'cuda', 'cuda:1', ...")
@click.option('--iters', type=click.IntRange(min=1), default=10, show_default=True, help='Timed iterations.')
@click.option('--warmup', type=click.IntRange(min=0), default=3, show_default=True, help='Untimed warm-up iterations.')
@click.option('--compile', 'use_compile', is_flag=True, default=False, help='Wrap mapping and synthesis in torch.compile.')
@click.option('--fp16', is_flag=True, default=False, help='fp16 for the 4 highest resolutions (CUDA only; ignored on CPU).')
@click.option('--channels-last/--no-channels-last', default=True, show_default=True,
              help='Channels-last activations on the CPU (networks_stylegan2.CPU_CHANNELS_LAST).')
@click.option('--mallopt', 'use_mallopt', is_flag=True, default=False,
              help='Linux/glibc: keep freed large blocks in the heap (mallopt) so big activations are not '
                   're-faulted on every call.')
@click.option('--threads', 'num_threads', type=click.IntRange(min=0), default=0, show_default=True, help=threads.THREADS_HELP)
@click.option('--profile', type=click.IntRange(min=0), default=0, show_default=True,
              help='Also run N iterations under torch.profiler and print the top operators.')
@click.option('--verbose', is_flag=True, default=False, help='Show full tracebacks on errors.')
def main(cfg, res, cbase, cmax, batch, device, iters, warmup, use_compile, fp16, channels_last, use_mallopt,
         num_threads, profile, verbose):
    """Time the generator's mapping and synthesis networks (noise_mode='const')."""
    try:
        if use_mallopt:
            tune_malloc()
        threads.apply(num_threads)
        dev = torch.device(device)
        if dev.type == 'cuda' and not torch.cuda.is_available():
            raise ValueError(f'--device {device}: CUDA is not available')
        if fp16 and dev.type != 'cuda':
            click.echo('note: --fp16 has no effect off CUDA (fp16 layers are CUDA-only)', err=True)
        r = run_benchmark(cfg=cfg, res=res, cbase=cbase, cmax=cmax, batch=batch, device=device, iters=iters,
                          warmup=warmup, compile=use_compile, fp16=fp16, channels_last=channels_last,
                          profile=profile)
        r['mallopt'] = use_mallopt
    except (ValueError, RuntimeError) as e:
        if verbose:
            raise
        raise click.ClickException(str(e).splitlines()[0] if str(e) else type(e).__name__)
    click.echo(format_table(r))
    if r['profile_table']:
        click.echo(r['profile_table'])


if __name__ == '__main__':
    main()

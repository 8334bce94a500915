"""Micro-benchmark of the reference ops (bias_act, upfirdn2d, conv2d_resample) at the sizes a
StyleGAN2 generator/discriminator at 256x256 uses; prints a table of milliseconds per call.

The "kernel ms" column times the compiled kernels (torch_utils/ops/*.{h,cpp,cu}) on the same
input: the CPU build on --device cpu (built on first use; this is the measurement that decides
whether CPU dispatch uses it, see docs/performance.md), the CUDA build on a CUDA device; "-" when
an op has no kernel or the build is unavailable. The "naive" column times a straightforward composition (zero insertion by reshape + pad, full
convolution, then slicing; out-of-place bias/activation/gain/clamp) for comparison. Numbers are
printed, never asserted: speed goals live here, not in the tests.
"""

import time

import click
import numpy as np
import torch
import torch.nn.functional as F

from torch_utils import ops
from torch_utils.ops import bias_act, conv2d_resample, filtered_lrelu, upfirdn2d


def _timeit(fn, repeat, number):
    """Best-of-`repeat` mean time of `number` calls, in milliseconds."""
    fn()
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter() - start) / number)
    return best * 1e3


# ---- naive baselines ------------------------------------------------------------------------

def _naive_bias_act(x, b, gain, clamp):
    x = x + b.reshape(1, -1, 1, 1)
    x = torch.where(x >= 0, x, x * 0.2)
    return (x * gain).clamp(-clamp, clamp)


def _naive_upfirdn2d(x, f, up, down, pad):
    n, c, h, w = x.shape
    x = x.reshape(n, c, h, 1, w, 1)
    x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1]).reshape(n, c, h * up, w * up)
    x = F.pad(x, pad)
    k = f.flip([0, 1])[None, None].repeat(c, 1, 1, 1).to(x.dtype)
    return F.conv2d(x, k, groups=c)[:, :, ::down, ::down]


def _naive_conv2d_resample(x, w, f, up, down, padding):
    fw = f.shape[-1]
    p = padding
    if up > 1:
        pads = [p + (fw + up - 1) // 2, p + (fw - up) // 2] * 2
        x = _naive_upfirdn2d(x, f * up ** 2, up, 1, pads)
    elif down > 1:
        pads = [p + (fw - down + 1) // 2, p + (fw - down) // 2] * 2
        x = F.pad(x, pads)
    else:
        x = F.pad(x, [p] * 4)
    x = F.conv2d(x, w)
    if down > 1:
        x = _naive_upfirdn2d(x, f, 1, down, [0, 0, 0, 0])
    return x


# ---- cases ----------------------------------------------------------------------------------

def _kernel_namespace(device):
    """The compiled op namespace for `device`, or None (prints why once, through the warning)."""
    return (ops.CUDA_KERNELS if device.type == "cuda" else ops.CPU_KERNELS).get()


def _cases(device, dtype, grad=False):
    f = upfirdn2d.setup_filter([1, 3, 3, 1], device=device)
    kern = _kernel_namespace(device)
    cases = []
    for c, r in [(512, 16), (128, 128), (64, 256)]:
        x = torch.randn(1, c, r, r, device=device, dtype=dtype, requires_grad=grad)
        b = torch.randn(c, device=device, dtype=dtype)
        cases.append((f"bias_act lrelu+gain+clamp {c}x{r}^2",
                      lambda x=x, b=b: bias_act.bias_act(x, b, act="lrelu", clamp=256),
                      lambda x=x, b=b: _naive_bias_act(x, b, np.sqrt(2), 256),
                      kern and (lambda x=x, b=b, kern=kern: bias_act._bias_act_kernel(kern, x, b, act="lrelu",
                                                                          clamp=256))))
    for c, r in [(3, 128), (64, 128)]:
        x = torch.randn(1, c, r, r, device=device, dtype=dtype, requires_grad=grad)
        cases.append((f"upsample2d 4-tap {c}x{r}^2 -> {2 * r}^2",
                      lambda x=x: upfirdn2d.upsample2d(x, f),
                      lambda x=x: _naive_upfirdn2d(x, f * 4, 2, 1, [2, 1, 2, 1]),
                      kern and (lambda x=x, kern=kern: upfirdn2d._upfirdn2d_kernel(
                          kern, x, f, up=2, padding=[2, 1, 2, 1], gain=4))))
    for c, r in [(64, 256), (128, 128)]:
        x = torch.randn(1, c, r, r, device=device, dtype=dtype, requires_grad=grad)
        cases.append((f"downsample2d 4-tap {c}x{r}^2 -> {r // 2}^2",
                      lambda x=x: upfirdn2d.downsample2d(x, f),
                      lambda x=x: _naive_upfirdn2d(x, f, 1, 2, [1, 1, 1, 1]),
                      kern and (lambda x=x, kern=kern: upfirdn2d._upfirdn2d_kernel(
                          kern, x, f, down=2, padding=[1, 1, 1, 1]))))
        cases.append((f"filter2d 4-tap {c}x{r}^2",
                      lambda x=x: upfirdn2d.filter2d(x, f),
                      lambda x=x: _naive_upfirdn2d(x, f, 1, 1, [2, 1, 2, 1]),
                      kern and (lambda x=x, kern=kern: upfirdn2d._upfirdn2d_kernel(
                          kern, x, f, padding=[2, 1, 2, 1]))))
    for cin, cout, r, k, up, down in [(256, 128, 64, 3, 2, 1), (128, 64, 128, 3, 2, 1),
                                      (64, 64, 256, 3, 1, 1), (64, 128, 256, 3, 1, 2),
                                      (64, 128, 256, 1, 1, 2)]:
        x = torch.randn(1, cin, r, r, device=device, dtype=dtype, requires_grad=grad)
        w = torch.randn(cout, cin, k, k, device=device, dtype=dtype)
        kind = "up2" if up > 1 else ("down2" if down > 1 else "same")
        cases.append((f"conv2d_resample {k}x{k} {kind} {cin}->{cout} @{r}^2",
                      lambda x=x, w=w, up=up, down=down, k=k: conv2d_resample.conv2d_resample(
                          x, w, f=f, up=up, down=down, padding=k // 2, flip_weight=(up == 1)),
                      lambda x=x, w=w, up=up, down=down, k=k: _naive_conv2d_resample(
                          x, w, f, up, down, k // 2), None))
    # StyleGAN3-like filtered_lrelu: 12-tap separable filters, up 2, down 2.
    fs = torch.tensor(np.hanning(14)[1:-1], dtype=torch.float32, device=device)
    for c, r in [(256, 64), (64, 256)]:
        x = torch.randn(1, c, r, r, device=device, dtype=dtype, requires_grad=grad)
        b = torch.randn(c, device=device, dtype=dtype)
        kw = dict(fu=fs, fd=fs, b=b, up=2, down=2, padding=[11, 10, 11, 10], clamp=256)
        cases.append((f"filtered_lrelu 12-tap up2 down2 {c}x{r}^2",
                      lambda x=x, kw=kw: filtered_lrelu.filtered_lrelu(x, **kw),
                      lambda x=x, kw=kw: filtered_lrelu._filtered_lrelu_ref(x, **kw),
                      kern and (lambda x=x, kw=kw, kern=kern: filtered_lrelu._filtered_lrelu_kernel(
                          kern, x, **kw))))
    return cases


@click.command()
@click.option("--device", default="cpu", show_default=True, help="Torch device to run on.")
@click.option("--threads", type=int, default=0, show_default=True,
              help="torch.set_num_threads value (0 = leave PyTorch's default).")
@click.option("--repeat", type=int, default=3, show_default=True,
              help="Timing repeats; the best one is reported.")
@click.option("--number", type=int, default=5, show_default=True, help="Calls per repeat.")
@click.option("--grad/--no-grad", default=False, show_default=True,
              help="Time under autograd (inputs require grad) instead of inference mode.")
@click.option("--filter", "name_filter", default="", show_default=True,
              help="Only run cases whose name contains this text.")
def main(device, threads, repeat, number, grad, name_filter):
    """Print ms per call of the reference ops, next to a naive composition."""
    if threads > 0:
        torch.set_num_threads(threads)
    try:
        dev = torch.device(device)
        torch.zeros(1, device=dev)
    except (RuntimeError, ValueError) as exc:
        raise click.ClickException(f"--device: cannot use {device!r}: {exc}") from None
    torch.manual_seed(0)
    cases = [c for c in _cases(dev, torch.float32, grad) if name_filter in c[0]]
    sync = (lambda: torch.cuda.synchronize()) if dev.type == "cuda" else (lambda: None)
    print(f"device={dev} threads={torch.get_num_threads()} mode={'grad' if grad else 'inference'}"
          f" torch={torch.__version__}")
    print(f"{'case':<46} {'ops ms':>9} {'naive ms':>9} {'speedup':>8} {'kernel ms':>10}")
    for name, fast, naive, kernel in cases:
        with (torch.enable_grad() if grad else torch.inference_mode()):
            t_fast = _timeit(lambda: (fast(), sync()), repeat, number)
            t_naive = _timeit(lambda: (naive(), sync()), repeat, number)
            t_kernel = _timeit(lambda: (kernel(), sync()), repeat, number) if kernel else None
        kernel_txt = f"{t_kernel:10.2f}" if t_kernel is not None else f"{'-':>10}"
        print(f"{name:<46} {t_fast:9.2f} {t_naive:9.2f} {t_naive / t_fast:7.2f}x {kernel_txt}",
              flush=True)


if __name__ == "__main__":
    main()  # pylint: disable=no-value-for-parameter

"""Fused bias + activation + gain + clamp (`bias_act`) with StyleGAN2-ADA's conventions.

Every layer of the StyleGAN networks ends in `bias_act(x, b, act=..., gain=..., clamp=...)`, and
foreign network pickles call it from their own source, so the signature, the activation table and
the order of operations (add bias, activation, multiply by gain, clamp to [-clamp, clamp]) follow
NVIDIA's op. The pure-PyTorch reference runs the later steps in place on its own fresh
intermediate when no gradient is being recorded (inference), so generation makes one output tensor
instead of four, and for linear/relu/lrelu folds the gain into the bias addition (one pass
fewer); under autograd it uses out-of-place ops, differentiable to second order.
"""

import numpy as np
import torch
import torch.nn.functional as F

from . import ext_ops
from . import CUDA_KERNELS, kernels_for

try:
    from dnnlib import EasyDict as _Record
except ImportError:  # pragma: no cover - dnnlib is part of the project
    class _Record(dict):
        """Dict with attribute access."""
        __getattr__ = dict.__getitem__

__all__ = ["activation_funcs", "bias_act", "_init"]


_SQRT2 = float(np.sqrt(2))  # a Python float (np.float64 trips torch.compile's guards)


def _swish(x, **_):
    return torch.sigmoid(x) * x


activation_funcs = {
    "linear":   _Record(func=lambda x, **_: x, def_alpha=0, def_gain=1,
                        cuda_idx=1, ref="", has_2nd_grad=False),
    "relu":     _Record(func=lambda x, **_: F.relu(x), def_alpha=0, def_gain=_SQRT2,
                        cuda_idx=2, ref="y", has_2nd_grad=False),
    "lrelu":    _Record(func=lambda x, alpha, **_: F.leaky_relu(x, alpha), def_alpha=0.2,
                        def_gain=_SQRT2, cuda_idx=3, ref="y", has_2nd_grad=False),
    "tanh":     _Record(func=lambda x, **_: torch.tanh(x), def_alpha=0, def_gain=1,
                        cuda_idx=4, ref="y", has_2nd_grad=True),
    "sigmoid":  _Record(func=lambda x, **_: torch.sigmoid(x), def_alpha=0, def_gain=1,
                        cuda_idx=5, ref="y", has_2nd_grad=True),
    "elu":      _Record(func=lambda x, **_: F.elu(x), def_alpha=0, def_gain=1,
                        cuda_idx=6, ref="y", has_2nd_grad=True),
    "selu":     _Record(func=lambda x, **_: F.selu(x), def_alpha=0, def_gain=1,
                        cuda_idx=7, ref="y", has_2nd_grad=True),
    "softplus": _Record(func=lambda x, **_: F.softplus(x), def_alpha=0, def_gain=1,
                        cuda_idx=8, ref="y", has_2nd_grad=True),
    "swish":    _Record(func=_swish, def_alpha=0, def_gain=_SQRT2,
                        cuda_idx=9, ref="x", has_2nd_grad=True),
}


def _swish_(x, **_):
    return x.mul_(torch.sigmoid(x))


# In-place variants, used only on the reference's own intermediates when nothing is recorded.
_inplace_funcs = {
    "linear": lambda x, **_: x,
    "relu": lambda x, **_: x.relu_(),
    "lrelu": lambda x, alpha, **_: F.leaky_relu_(x, alpha),
    "tanh": lambda x, **_: x.tanh_(),
    "sigmoid": lambda x, **_: x.sigmoid_(),
    "elu": lambda x, **_: F.elu_(x),
    "selu": lambda x, **_: F.selu_(x),
    "softplus": lambda x, **_: F.softplus(x),
    "swish": _swish_,
}

# act(g * x) == g * act(x) for g > 0: the gain can be folded into the bias addition.
_POSITIVE_HOMOGENEOUS = ("linear", "relu", "lrelu")

# The kernels (bias_act.{h,cpp,cu}) are built once per process, shared with the other ops.
_slot = CUDA_KERNELS

# The CPU build of the kernel is not faster than the reference on the CPU (benchmarks/bench_ops.py,
# docs/performance.md), so CPU tensors keep the reference.
_CPU_KERNEL_FASTER = False


def _init() -> bool:
    """True when the compiled CUDA kernel is available (never on CPU-only installs)."""
    return torch.cuda.is_available() and _slot.available()


def bias_act(x, b=None, dim=1, act="linear", alpha=None, gain=None, clamp=None, impl="cuda"):
    """Add bias `b` along dimension `dim`, apply activation `act`, scale by `gain`, clamp.

    Args: x tensor; b None or 1-D with x.shape[dim] entries; act a key of `activation_funcs`;
    alpha the activation's shape parameter (lrelu slope; default from the table); gain output
    scale (default from the table, e.g. sqrt(2) for lrelu); clamp None or >= 0 (clamp to
    [-clamp, clamp]; negative disables); impl 'cuda' or 'ref'. Returns a tensor like x.
    """
    k = kernels_for(impl, x, _slot, cpu=_CPU_KERNEL_FASTER)
    if k is not None:
        return _bias_act_kernel(k, x, b, dim, act, alpha, gain, clamp)
    return _bias_act_ref(x, b=b, dim=dim, act=act, alpha=alpha, gain=gain, clamp=clamp)


def _bias_act_kernel(k, x, b=None, dim=1, act="linear", alpha=None, gain=None, clamp=None):
    """bias_act on the compiled kernels of op namespace `k` (same checks as the reference)."""
    spec, alpha, gain, clamp = _check_args(x, b, dim, act, alpha, gain, clamp)
    return ext_ops.bias_act(k, x, b, dim, spec.cuda_idx, alpha, gain, clamp, spec.has_2nd_grad)


def _check_args(x, b, dim, act, alpha, gain, clamp):
    """Validate the arguments; return (activation spec, alpha, gain, clamp) as floats."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"x: expected a tensor, got {type(x).__name__}")
    spec = activation_funcs.get(act)
    if spec is None:
        raise ValueError(f"act: expected one of {sorted(activation_funcs)}, got {act!r}")
    if not 0 <= dim < x.ndim:
        raise ValueError(f"dim: expected 0 <= dim < {x.ndim}, got {dim}")
    if b is not None and not (isinstance(b, torch.Tensor) and b.ndim == 1
                              and b.shape[0] == x.shape[dim]):
        shape = tuple(b.shape) if isinstance(b, torch.Tensor) else type(b).__name__
        raise ValueError(f"b: expected a 1-D tensor of {x.shape[dim]} values (x.shape[{dim}])"
                         f", got {shape}")
    alpha = float(alpha if alpha is not None else spec.def_alpha)
    gain = float(gain if gain is not None else spec.def_gain)
    clamp = float(clamp if clamp is not None else -1)
    return spec, alpha, gain, clamp


def _bias_act_ref(x, b=None, dim=1, act="linear", alpha=None, gain=None, clamp=None):
    """Pure-PyTorch bias_act (differentiable to any order)."""
    spec, alpha, gain, clamp = _check_args(x, b, dim, act, alpha, gain, clamp)

    # In place only on tensors this function created, and only when autograd records nothing.
    inplace = not (torch.is_grad_enabled()
                   and (x.requires_grad or (b is not None and b.requires_grad)))
    fresh = False
    if b is not None:
        b = b.reshape([-1 if i == dim else 1 for i in range(x.ndim)])
        if act in _POSITIVE_HOMOGENEOUS and gain > 0 and gain != 1:
            # act(x + b) * gain == act(gain * x + gain * b): bias and gain in one pass.
            x = torch.add(b * gain, x, alpha=gain)
            gain = 1.0
        else:
            x = x + b
        fresh = True
    if act != "linear":
        x = (_inplace_funcs[act] if (fresh and inplace) else spec.func)(x, alpha=alpha)
        fresh = True
    if gain != 1:
        x = x.mul_(gain) if (fresh and inplace) else x * gain
        fresh = True
    if clamp >= 0:
        if fresh and inplace:
            x = x.clamp_(-clamp, clamp)
        elif x.dtype == torch.bfloat16:   # same values; on the CPU its backward is 7x faster than clamp's in bf16
            x = F.hardtanh(x, -clamp, clamp)
        else:
            x = x.clamp(-clamp, clamp)
    return x

"""Drop-in `conv2d` / `conv_transpose2d` with NVIDIA's `conv2d_gradfix` interface.

StyleGAN2-ADA/StyleGAN3 code routes every convolution through this module so that training can
switch off weight gradients during the regularization passes (`no_weight_gradients`) and always
take second-order gradients (R1 differentiates through the discriminator's convolutions).

Here both functions are the plain torch.nn.functional ops: PyTorch's own convolution backward is
twice differentiable, and its autograd engine already skips weight gradients that a
`torch.autograd.grad(..., inputs=[images])` call does not ask for. `enabled` and
`no_weight_gradients` are kept as switches with the same names so that foreign code and the
training loop can set them; with the plain ops they do not change results.
"""

import contextlib

import torch.nn.functional as F

__all__ = ["enabled", "weight_gradients_disabled", "no_weight_gradients", "conv2d",
           "conv_transpose2d"]

enabled = False                    # Training code sets this; results are the same either way.
weight_gradients_disabled = False  # Set inside `no_weight_gradients()`.


@contextlib.contextmanager
def no_weight_gradients(disable=True):
    """Context in which weight gradients may be skipped (StyleGAN2-ADA: no argument; StyleGAN3:
    `disable`). The flag is restored on exit, also after an exception."""
    global weight_gradients_disabled
    old = weight_gradients_disabled
    if disable:
        weight_gradients_disabled = True
    try:
        yield
    finally:
        weight_gradients_disabled = old


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """torch.nn.functional.conv2d with the gradfix signature (first and second order grads)."""
    return F.conv2d(input=input, weight=weight, bias=bias, stride=stride, padding=padding,
                    dilation=dilation, groups=groups)


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1):
    """torch.nn.functional.conv_transpose2d with the gradfix signature."""
    return F.conv_transpose2d(input=input, weight=weight, bias=bias, stride=stride,
                              padding=padding, output_padding=output_padding, groups=groups,
                              dilation=dilation)


def _should_use_custom_op(input) -> bool:
    """Kept for interface parity: the plain ops are always used."""
    return False


"""The generator's pose loss (`train.py --pose-loss`): what a frozen camera reader sees, against
the camera that was asked for.

The reader (metrics/pose_reader.py, trained on the real images before training) is read on each
generated image once as it is and once mirrored (with the asked yaw negated: the mirror image of an
orbit camera about a look-at point on the symmetry plane, as `--mirror` assumes), and the two
readings are averaged, so that G cannot profit from the reader's left/right asymmetries.
`--pose-loss-params` limits which of G's weights the loss may train.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from raycond import camera as cam


def reading_errors(reader: torch.nn.Module, img: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """(N, 2) signed yaw/pitch errors in degrees of the reader's reading of `img` (in [-1, 1]),
    averaged over the image and its mirror image, against the asked cameras `c`."""
    asked = cam.label_yaw_pitch_deg(c.detach().float())
    x = (img.float() + 1) * 127.5
    both = reader(torch.cat([x, x.flip(3)]))
    n = img.shape[0]
    read = (both[:n] + both[n:] * torch.tensor([-1.0, 1.0], device=both.device)) / 2
    return cam.wrap_deg(read - asked)


def _charge(excess: torch.Tensor, reader: torch.nn.Module) -> torch.Tensor:
    """Smooth-L1 of errors in units of the data's yaw/pitch spread, summed over the two axes."""
    return F.smooth_l1_loss(excess / reader.target_std, torch.zeros_like(excess), reduction='none').sum(dim=1)


def pose_loss(reader: torch.nn.Module, img: torch.Tensor, c: torch.Tensor, margin_deg: float = 0.0):
    """Per-image pose loss of generated images `img` (N, C, H, W in [-1, 1]) asked for cameras `c`.

    `reader` maps images in 0..255 to (N, 2) yaw/pitch in degrees and has `target_std` (the
    training set's yaw/pitch spread). Returns (loss (N,), absolute error in degrees (N, 2)): a
    smooth-L1 of the reading's error in units of that spread, read on the image and its mirror
    image. Errors within `margin_deg` per axis cost nothing, so that the reader's own noise, which
    is larger for some kinds of image than for others, is not charged.
    """
    diff = reading_errors(reader, img, c)
    excess = (diff.abs() - float(margin_deg)).clamp_min(0)
    return _charge(excess, reader), diff.detach().abs()


def relative_pose_loss(reader: torch.nn.Module, img: torch.Tensor, c: torch.Tensor, margin_deg: float = 0.0):
    """Like pose_loss, for images in pairs (rows 2i and 2i+1: one latent at two cameras): only the
    difference of the two readings has to match the difference of the asked angles, so a head
    that the reader reads consistently off by the same amount at every camera costs nothing and a
    head that does not turn rigidly with the camera does. Returns (loss (N/2,), absolute error in
    degrees of every image (N, 2))."""
    if img.shape[0] % 2:
        raise ValueError(f'relative_pose_loss needs images in pairs, got {img.shape[0]}')
    diff = reading_errors(reader, img, c)
    relative = cam.wrap_deg(diff[0::2] - diff[1::2])
    excess = (relative.abs() - float(margin_deg)).clamp_min(0)
    return _charge(excess, reader), diff.detach().abs()


def ray_parameters(G: torch.nn.Module) -> list[tuple[torch.nn.Parameter, torch.Tensor]]:
    """(parameter, 0/1 mask) pairs of the weights through which G sees the camera: in each
    ray-conditioned layer, the convolution weights over the ray input channels (the last
    `ray_channels`) and the style rows that modulate them. With `--pose-loss-params=rays` the pose
    loss trains only these, so it can teach G how to turn a head but has no direct say in which
    heads G draws (on the 64² synthetic heads that kept coverage but hardly moved the pose)."""
    pairs = []
    for module in G.modules():
        rays = getattr(module, 'ray_channels', 0)
        weight = getattr(module, 'weight', None)
        affine = getattr(module, 'affine', None)
        if not rays or not isinstance(weight, torch.nn.Parameter) or affine is None or weight.ndim != 4:
            continue
        mask = torch.zeros_like(weight)
        mask[:, -rays:] = 1
        pairs.append((weight, mask))
        for p in (affine.weight, affine.bias):
            mask = torch.zeros_like(p)
            mask[-rays:] = 1
            pairs.append((p, mask))
    if not pairs:
        raise ValueError('--pose-loss-params=rays needs a generator whose layers take camera rays (raycond2)')
    return pairs


def trained_parameters(G: torch.nn.Module, which: str) -> list[tuple[torch.nn.Parameter, torch.Tensor | None]] | None:
    """What `--pose-loss-params` lets the pose loss train, as (parameter, 0/1 mask or None for the
    whole parameter) pairs: None for 'all' (the loss simply joins G's), the ray weights for 'rays',
    every synthesis weight for 'synthesis' (the mapping network, which decides which heads G draws,
    is left to D)."""
    if which == 'all':
        return None
    if which == 'rays':
        return ray_parameters(G)
    if which == 'synthesis':
        return [(p, None) for p in G.synthesis.parameters()]
    raise ValueError(f"pose_loss_params must be 'all', 'rays' or 'synthesis', got {which!r}")

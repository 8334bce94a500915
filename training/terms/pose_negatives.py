"""`--term=pose-negatives:W[:deg=MIN-MAX]`: a matching-aware discriminator. D sees each real
image a second time with its camera turned by a random MIN–MAX degrees
(raycond.camera.perturb_labels) and counts that pair as fake, with weight W: D must tell a few
degrees of pose apart on real images, so a generated image whose pose is off by as much is judged
fake too. G's loss is unchanged.
"""

from __future__ import annotations

import torch

from raycond import camera as cam
from torch_utils import training_stats
from training.terms import Term


def parse_deg_range(text: str) -> list[float]:
    """'0.5-10' → [0.5, 10.0] degrees, with 0 <= MIN <= MAX <= 90."""
    try:
        lo, hi = (float(v) for v in text.split('-'))
    except ValueError:
        raise ValueError(f"deg must be two angles in degrees like 2-15, got {text!r}") from None
    if not 0 <= lo <= hi <= 90:
        raise ValueError(f'deg needs 0 <= MIN <= MAX <= 90 degrees, got {text!r}')
    return [lo, hi]


class PoseNegativesTerm(Term):
    """D term: real images at a turned camera count as fake, with weight W."""

    phase = 'D'
    summary = 'D: real images with a camera turned by deg=MIN-MAX degrees, default 2-15, count as fake'
    needs_camera = True
    options = {'deg': parse_deg_range}

    def __init__(self, weight, G=None, D=None, context=None, deg=(2.0, 15.0)):
        super().__init__(weight)
        if D is not None and getattr(D, 'c_dim', 0) != cam.LABEL_DIM:
            raise ValueError(f'--term=pose-negatives needs a discriminator conditioned on {cam.LABEL_DIM}-value cameras')
        self.deg = tuple(float(v) for v in deg)

    def __call__(self, img, c, run_D):
        wrong_logits = run_D(img.detach(), cam.perturb_labels(c, *self.deg))
        training_stats.report('Loss/scores/wrong_pose', wrong_logits)
        training_stats.report('Loss/signs/wrong_pose', wrong_logits.sign())
        return torch.nn.functional.softplus(wrong_logits).flatten() * self.weight

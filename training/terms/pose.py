"""`--term=pose:W`: G pays W times the pose error that a frozen camera reader
(training/terms/pose_reader.py) reads on each generated image, against the camera it was asked for.

The discriminator learns pose only as far as the adversarial game asks for it; this gives G a
direct signal that does not share D's features. The reader looks at each image once as it is and
once mirrored (asked yaw negated: the mirror image of an orbit camera about a look-at point on the
symmetry plane, as `--mirror` assumes) and the two readings are averaged, so that G cannot profit
from the reader's left/right asymmetries.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from raycond import camera as cam
from torch_utils import training_stats
from training.terms import Term
from training.terms import pose_reader


def reading_errors(reader: torch.nn.Module, img: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """(N, 2) signed yaw/pitch errors in degrees of the reader's reading of `img` (in [-1, 1]),
    averaged over the image and its mirror image, against the asked cameras `c`."""
    asked = cam.label_yaw_pitch_deg(c.detach().float())
    x = (img.float() + 1) * 127.5
    both = reader(torch.cat([x, x.flip(3)]))
    n = img.shape[0]
    read = (both[:n] + both[n:] * torch.tensor([-1.0, 1.0], device=both.device)) / 2
    return cam.wrap_deg(read - asked)


def pose_loss(reader: torch.nn.Module, img: torch.Tensor, c: torch.Tensor):
    """Per-image pose loss of generated images `img` (N, C, H, W in [-1, 1]) asked for cameras `c`:
    (loss (N,), absolute error in degrees (N, 2)). The loss is a smooth-L1 of the reading's error
    in units of the data's yaw/pitch spread (`reader.target_std`), summed over the two axes."""
    diff = reading_errors(reader, img, c)
    loss = F.smooth_l1_loss(diff / reader.target_std, torch.zeros_like(diff), reduction='none').sum(dim=1)
    return loss, diff.detach().abs()


class PoseTerm(Term):
    """G term: W × pose_loss of the run's frozen reader."""

    phase = 'G'
    summary = 'G pays the error of a frozen camera reader trained on the real images'
    needs_camera = True

    def __init__(self, weight, G=None, D=None, context=None, reader=None):
        super().__init__(weight)
        if G is not None and getattr(G, 'c_dim', 0) != cam.LABEL_DIM:
            raise ValueError(f'--term=pose needs a generator conditioned on {cam.LABEL_DIM}-value cameras')
        if reader is None:  # `reader`: a frozen module given directly (tests, benchmarks)
            reader = pose_reader.load_or_train(context.run_dir, context.training_set, device=context.device,
                                               rank=context.rank, num_gpus=context.num_gpus,
                                               resume_pkl=context.resume_pkl)
        self.reader = reader

    def __call__(self, img, c, run_D=None):
        loss, err = pose_loss(self.reader, img, c)
        training_stats.report('Loss/G/pose', loss)
        training_stats.report('Pose/reader_err_yaw', err[:, 0])
        training_stats.report('Pose/reader_err_pitch', err[:, 1])
        return loss * self.weight

"""Attribute anchor (`train.py --attr-anchor=W`): while another loss fine-tunes G, each latent keeps
the attributes it had in the network the run resumed from, as a frozen attribute classifier
reads them.

Why: on the synthetic heads, `--pose-loss` lowers the pose error within 16 kimg, but it also pays
G to draw fewer of the heads its reader finds hard to pose (bald and long-haired): the hair-style
histogram drifts away from the data (`attr_tv`). A pixel anchor (pooled squared difference to the
resumed network's images) only slowed both down together, because turning a head by a fraction of
a pixel and redrawing its hair are changes of a similar size in pixels. The drift is a change of
*kind*, so this anchor charges exactly that: for the same latent and camera, the KL divergence
from the resumed network's attribute probabilities to G's, summed over attributes (hair style,
skin, hair colour, background hue). A head may turn, sharpen or change shading; it may not become
another kind of head.

The classifier is the `attr_tv` metric's kind (metrics/synth_coverage.py), trained on the real
images' factor labels, but with another seed and width than the metric's, so that the metric
still reads with a network G was never trained against; like the metric's, it is cached next to
the user's other metric probes. It needs a dataset whose images carry `raycond/synth` factors.
The reference is a frozen copy of G as it was when the loss was built (after `--resume`); a run
continued with `--resume=auto` anchors to the snapshot it continues from.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from metrics import metric_utils
from metrics import synth_coverage

# Not the metric's classifier (seed 0, channels 24/48/64): see the module docstring.
CLASSIFIER = dict(seed=2, channels=(32, 64, 96))


def load_classifier(training_set_kwargs, device, rank=0, num_gpus=1):
    """The frozen attribute classifier for the anchor (trained now, or loaded from the cache)."""
    opts = metric_utils.MetricOptions(dataset_kwargs=training_set_kwargs, num_gpus=num_gpus, rank=rank,
                                      device=device, cache=True, seed=0)
    model, extra = synth_coverage.get_attribute_classifier(opts, **CLASSIFIER)
    if rank == 0:
        acc = ', '.join(f'{k} {v:.2f}' for k, v in extra['accuracy'].items())
        print(f'Attribute classifier for --attr-anchor: held-out accuracy {acc}')
    return model


class AttributeAnchor:
    """A frozen copy of a generator and the penalty for changing what kind of image a latent draws."""

    def __init__(self, G: torch.nn.Module, sizes=synth_coverage.SIZES):
        self.G0 = copy.deepcopy(G).eval().requires_grad_(False)
        self.sizes = tuple(int(s) for s in sizes)
        self.classifier = None  # set by the training loop

    def log_probs(self, img: torch.Tensor) -> list[torch.Tensor]:
        """Per attribute, log-probabilities (N, classes) of images in [-1, 1]."""
        logits = self.classifier((img.float() + 1) * 127.5)
        return [F.log_softmax(part, dim=1) for part in logits.split(self.sizes, dim=1)]

    def penalty(self, G: torch.nn.Module, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Per-image KL(reference ‖ G) summed over attributes (N,), for latents z at cameras c; both
        networks without noise, style mixing or truncation."""
        if self.classifier is None:
            raise RuntimeError('attr_anchor > 0 but no attribute classifier was set')
        with torch.no_grad():
            ref = self.log_probs(self.G0(z, c, noise_mode='const'))
        cur = self.log_probs(G(z, c, noise_mode='const'))
        return sum((r.exp() * (r - q)).sum(dim=1) for r, q in zip(ref, cur))

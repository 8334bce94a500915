"""Attribute-mix loss (`train.py --attr-mix=W`): on datasets whose images carry `raycond/synth`
factor labels, G is paid to draw hair styles, skin tones, hair colours and background hues as
often as the data does, as a frozen attribute classifier reads them.

Why: on the synthetic heads `--pose-loss` lowers the pose error but also pays G to draw fewer of
the heads its reader finds hard to pose (bald and long-haired), and the discriminator wins them
back only slowly (the hair-style histogram drifts away from the data: `attr_tv`). Anchoring each
latent to the resumed network's attributes (tried before) stopped the drift but stalled the pose
with it, because it charged every change of a head. This loss charges only the *mix*.

How: the mix of the generated images is tracked across batches as a moving average `q` of the
classifier's mean probabilities (one histogram per attribute, not differentiated); the data's
mix `p` is the classifier's mean probabilities over held-out real images. Each step G pays
−Σ_k (p_k / q_k) · P_i(k) per image i: the gradient of KL(p ‖ q) with respect to the batch's share
of `q`. Classes the generator draws too rarely (p/q > 1) pull every image a little towards
themselves, too frequent ones push away; at p = q the weights are all 1 and, since each image's
probabilities sum to 1, the gradient vanishes. A moving average rather than the batch's own mean
keeps a batch of 32 heads from chasing its own sampling noise. (With several GPUs each process
tracks the mix of its own share of the batches.)

The classifier is the `attr_tv` metric's kind (metrics/synth_coverage.py) with another seed and
width (`CLASSIFIER`), so that the metric still reads with a network G was never trained against.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from metrics import metric_utils
from metrics import synth_coverage

# Not the metric's classifier (seed 0, channels 24/48/64): see the module docstring.
CLASSIFIER = dict(seed=2, channels=(32, 64, 96))


def load_classifier(training_set_kwargs, device, rank=0, num_gpus=1):
    """The frozen attribute classifier (trained now, or loaded from the cache) and the data's mix:
    per attribute, the mean class probabilities over the held-out real images."""
    opts = metric_utils.MetricOptions(dataset_kwargs=training_set_kwargs, num_gpus=num_gpus, rank=rank,
                                      device=device, cache=True, seed=0)
    try:
        model, extra = synth_coverage.get_attribute_classifier(opts, **CLASSIFIER)
    except ValueError as err:  # no factor labels: say which option needs them
        raise ValueError(f'--attr-mix needs the generative factors of a raycond/synth dataset: {err}') from None
    model = model.to(device).eval().requires_grad_(False)
    with torch.no_grad():
        logits = model.logits_from_features(extra['ref_features'].to(device).float())
    target = [F.softmax(part, dim=1).mean(dim=0) for part in logits.split(synth_coverage.SIZES, dim=1)]
    if rank == 0:
        acc = ', '.join(f'{k} {v:.2f}' for k, v in extra['accuracy'].items())
        print(f'Attribute classifier for --attr-mix: held-out accuracy {acc}')
    return model, target


class AttributeMix:
    """The generated images' attribute mix (a moving average) and the loss that pulls it to the data's."""

    def __init__(self, classifier, target, momentum=0.98, max_ratio=4.0, sizes=synth_coverage.SIZES):
        self.classifier = classifier
        self.sizes = tuple(int(s) for s in sizes)
        self.target = [t.detach().float() / t.sum() for t in target]
        if [t.numel() for t in self.target] != list(self.sizes):
            raise ValueError(f'target sizes {[t.numel() for t in self.target]} do not match the attributes {self.sizes}')
        self.momentum = float(momentum)
        self.max_ratio = float(max_ratio)
        self.mix = None  # per attribute, the generated images' mean probabilities (moving average)

    def probs(self, img: torch.Tensor) -> list[torch.Tensor]:
        """Per attribute, class probabilities (N, classes) of images in [-1, 1]."""
        logits = self.classifier((img.float() + 1) * 127.5)
        return [F.softmax(part, dim=1) for part in logits.split(self.sizes, dim=1)]

    def tv(self) -> torch.Tensor:
        """Mean over attributes of the total variation between the tracked mix and the data's (soft
        probabilities, so not the `attr_tv` metric's number: a training-time gauge)."""
        if self.mix is None:
            return torch.tensor(float('nan'))
        return torch.stack([0.5 * (m - t.to(m.device)).abs().sum() for m, t in zip(self.mix, self.target)]).mean()

    def loss(self, img: torch.Tensor) -> torch.Tensor:
        """Per-image loss (N,) for generated images in [-1, 1]; updates the tracked mix first."""
        probs = self.probs(img)
        batch_mix = [p.detach().mean(dim=0) for p in probs]
        if self.mix is None:
            self.mix = batch_mix
        else:
            self.mix = [m * self.momentum + b * (1 - self.momentum) for m, b in zip(self.mix, batch_mix)]
        total = img.new_zeros([img.shape[0]])
        for p, m, t in zip(probs, self.mix, self.target):
            weight = (t.to(m.device) / m.clamp(min=1e-6)).clamp(max=self.max_ratio)
            total = total - (p * weight).sum(dim=1)
        return total + len(probs)  # 0 when every weight is 1 (each image's probabilities sum to 1)

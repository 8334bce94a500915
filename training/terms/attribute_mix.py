"""`--term=attr-mix:W`: on datasets whose images carry `raycond/synth` factor labels, G is paid
to draw hair styles, skin tones, hair colours and background hues as often as the data does, as a
frozen attribute classifier reads them (training/terms/attribute_classifier.py).

Why: a loss such as `pose` can buy a lower error by drawing fewer of the kinds of head that are
hard for it; this term charges only the *mix*, not each head's kind.

How: the mix of the generated images is tracked across batches as a moving average `q` of the
classifier's mean probabilities (one histogram per attribute, not differentiated); the data's mix
`p` is the classifier's mean probabilities over held-out real images. Each step G pays
−Σ_k (p_k / q_k) · P_i(k) per image i: the gradient of KL(p ‖ q) with respect to the batch's share
of `q`. At p = q the weights are all 1 and, since each image's probabilities sum to 1, the
gradient vanishes. (With several GPUs each process tracks the mix of its own batches.)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

import dnnlib
from torch_utils import training_stats
from training.terms import Term
from training.terms import attribute_classifier as attrs
from training.terms import probes

FILE_NAME = 'attr-classifier.pt'
# Not the attr_tv metric's classifier (seed 0, channels 24/48/64): see the module docstring.
CLASSIFIER = dict(seed=2, channels=(32, 64, 96))


def load_classifier(training_set_kwargs, device, run_dir, rank=0, num_gpus=1, resume_pkl=None):
    """The frozen attribute classifier (kept in the run directory) and the data's mix: per
    attribute, the mean class probabilities over the held-out real images."""
    kwargs = probes.probe_dataset_kwargs(training_set_kwargs)
    dataset = dnnlib.util.construct_class_by_name(**kwargs)
    config = dict(input_res=int(min(32, dataset.resolution)), steps=2000, batch_size=64, max_train=4000,
                  max_ref=5000, version=1)
    config.update(CLASSIFIER)

    def train():
        try:
            return attrs.train_classifier(dataset, kwargs, res=config['input_res'], steps=config['steps'],
                                          batch_size=config['batch_size'], max_train=config['max_train'],
                                          max_ref=config['max_ref'], seed=config['seed'],
                                          channels=tuple(config['channels']))
        except ValueError as err:  # no factor labels: say which option needs them
            raise ValueError(f'--term=attr-mix needs the generative factors of a raycond/synth dataset: {err}') from None

    try:
        model, extra = probes.load_or_train_in_run(
            run_dir, FILE_NAME, config, what='Attribute classifier for --term=attr-mix', device=device, rank=rank,
            num_gpus=num_gpus, resume_pkl=resume_pkl, train=train,
            build=lambda: attrs.AttributeClassifier(input_res=config['input_res'], channels=tuple(config['channels'])))
    finally:
        dataset.close()
    with torch.no_grad():
        logits = model.logits_from_features(extra['ref_features'].to(device).float())
    target = [F.softmax(part, dim=1).mean(dim=0) for part in logits.split(attrs.SIZES, dim=1)]
    if rank == 0:
        acc = ', '.join(f'{k} {v:.2f}' for k, v in extra['accuracy'].items())
        print(f'Attribute classifier for --term=attr-mix: held-out accuracy {acc}')
    return model, target


class AttributeMix:
    """The generated images' attribute mix (a moving average) and the loss that pulls it to the data's."""

    def __init__(self, classifier, target, momentum=0.98, max_ratio=4.0, sizes=attrs.SIZES):
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


class AttributeMixTerm(Term):
    """G term: W × AttributeMix.loss with the run's classifier."""

    phase = 'G'
    summary = 'synthetic heads: G draws each attribute class as often as the data does'

    def __init__(self, weight, G=None, D=None, context=None, mix=None):
        super().__init__(weight)
        if mix is None:  # `mix`: an AttributeMix given directly (tests, benchmarks)
            classifier, target = load_classifier(context.training_set_kwargs, context.device, context.run_dir,
                                                 rank=context.rank, num_gpus=context.num_gpus,
                                                 resume_pkl=context.resume_pkl)
            mix = AttributeMix(classifier, target)
        self.mix = mix

    def __call__(self, img, c, run_D=None):
        loss = self.mix.loss(img)
        training_stats.report('Loss/G/attr_mix', loss)
        training_stats.report('Attr/mix_tv', self.mix.tv())
        return loss * self.weight

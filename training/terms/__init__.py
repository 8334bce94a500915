"""Extra loss terms: plugins that the loss builds from `loss_kwargs.terms`.

StyleGAN's loss stays StyleGAN's; anything else a run pays for is a term, chosen by configuration
the way StyleGAN chooses its loss: `train.py --term=pose:10,attr-mix:3` becomes
`loss_kwargs.terms = [{'class_name': 'training.terms.pose.PoseTerm', 'weight': 10.0}, ...]`, and the
training loop's `build_loss` constructs every term (with the run's `TermContext`) and hands them
to the loss's constructor. Nothing is attached to the loss afterwards.

A term is a class listed in `TERMS` (a file names a term by its class name, which must be a row of
this table: nothing read from a file chooses what runs). Its `phase` says where its per-image loss
is added: 'G' to the generator's main loss on generated images and their cameras, 'D' to the
discriminator's main loss on real images and their cameras.
"""

from __future__ import annotations

import dataclasses

import torch

import dnnlib

# Name used by --term → class. Adding a term: a module under training/terms/ and a row here.
TERMS = {
    'pose': 'training.terms.pose.PoseTerm',
    'attr-mix': 'training.terms.attribute_mix.AttributeMixTerm',
    'pose-negatives': 'training.terms.pose_negatives.PoseNegativesTerm',
}



def term_help() -> str:
    """train.py's --term help, from each term's `summary`."""
    names = ', '.join(f'{name} ({term_class(cls).summary})' for name, cls in TERMS.items())
    return f'Extra loss terms, NAME:WEIGHT[:KEY=VALUE...] separated by commas: {names}'


@dataclasses.dataclass
class TermContext:
    """What a term may need from the run to build itself (its reader or classifier)."""
    device: torch.device | str = 'cpu'
    run_dir: str = '.'                      # where a term keeps its frozen probe
    training_set: object = None             # the training set (labelled real images)
    training_set_kwargs: dict = dataclasses.field(default_factory=dict)
    rank: int = 0
    num_gpus: int = 1
    resume_pkl: str | None = None           # a resumed run reuses the probe kept beside it


class Term:
    """One extra loss term. Subclasses set `phase` and implement `__call__`."""

    phase = 'G'              # 'G': added to G's main loss; 'D': added to D's main loss
    needs_camera = False     # True: only for networks conditioned on 25-value cameras
    options = {}             # KEY → parser of its --term value (str → value)
    summary = ''             # what it does, for train.py --help

    def __init__(self, weight: float, G=None, D=None, context: TermContext | None = None):
        self.weight = float(weight)

    def __call__(self, img: torch.Tensor, c: torch.Tensor, run_D) -> torch.Tensor:
        """Per-image loss (N,), already multiplied by the weight. G terms get generated images and
        their cameras; D terms get real images and their cameras. run_D(img, c) → D's logits."""
        raise NotImplementedError


def term_class(class_name: str) -> type:
    """The class of a term named in a configuration, if it is in TERMS."""
    if class_name not in TERMS.values():
        raise ValueError(f'unknown loss term class {class_name!r}; known: {", ".join(sorted(TERMS.values()))}')
    return dnnlib.util.get_obj_by_name(class_name)


def parse_terms(text: str | None) -> list[dnnlib.EasyDict]:
    """'pose:10,pose-negatives:1:deg=0.5-10' → [{'class_name': ..., 'weight': 10.0}, ...] (loss_kwargs.terms)."""
    specs = []
    for item in [s.strip() for s in (text or '').split(',') if s.strip()]:
        name, _, rest = item.partition(':')
        if name not in TERMS:
            raise ValueError(f'--term: unknown term {name!r} in {item!r}; known: {", ".join(TERMS)}')
        weight, *pairs = rest.split(':') if rest else ['']
        try:
            weight = float(weight)
        except ValueError:
            raise ValueError(f'--term: {item!r} needs a weight, e.g. {name}:10') from None
        if weight <= 0:
            raise ValueError(f'--term: the weight of {name} must be positive, got {weight:g}')
        spec = dnnlib.EasyDict(class_name=TERMS[name], weight=weight)
        parsers = term_class(TERMS[name]).options
        for pair in pairs:
            key, eq, value = pair.partition('=')
            if not eq or key not in parsers:
                raise ValueError(f'--term: {name} takes {", ".join(f"{k}=..." for k in parsers) or "no options"}, '
                                 f'got {pair!r}')
            try:
                spec[key] = parsers[key](value)
            except ValueError as err:
                raise ValueError(f'--term: {name}:{pair}: {err}') from None
        specs.append(spec)
    names = [s.class_name for s in specs]
    if len(set(names)) != len(names):
        raise ValueError(f'--term: each term may be given once, got {text!r}')
    return specs


def needs_camera(specs) -> list[str]:
    """Names of the terms in `specs` that need a camera-conditioned network."""
    by_class = {v: k for k, v in TERMS.items()}
    return [by_class[s['class_name']] for s in specs if term_class(s['class_name']).needs_camera]


def build_terms(specs, G, D, context: TermContext) -> list[Term]:
    """Construct the terms of loss_kwargs.terms for this run."""
    terms = []
    for spec in specs:
        kwargs = dict(spec)
        cls = term_class(kwargs.pop('class_name'))
        terms.append(cls(G=G, D=D, context=context, **kwargs))
    return terms

# ----------------------------------------------------------------------------- older configurations

# loss_kwargs keys of runs configured before terms, and the values that kept StyleGAN's behaviour.
_DROPPED = {'gpc_swap': 0.0, 'pl_no_weight_grad': False, 'pose_loss_margin': 0.0, 'pose_loss_params': 'all',
            'pose_loss_mode': 'absolute'}


def upgrade_loss_kwargs(loss_kwargs: dict) -> dict:
    """loss_kwargs of an older run (pose_loss=W, attr_mix=W, pose_negatives=W, pose_negative_deg)
    rewritten as terms, so its training options and snapshots still resume. Options that were
    removed are accepted only at the value that switched them off."""
    kwargs = dict(loss_kwargs)
    terms = list(kwargs.pop('terms', []))
    for key, off in _DROPPED.items():
        value = kwargs.pop(key, off)
        if value != off:
            raise ValueError(f'loss option {key}={value!r} is no longer supported (only {off!r})')
    pose = float(kwargs.pop('pose_loss', 0) or 0)
    mix = float(kwargs.pop('attr_mix', 0) or 0)
    negatives = float(kwargs.pop('pose_negatives', 0) or 0)
    deg = kwargs.pop('pose_negative_deg', None)
    if negatives > 0:
        terms.append(dict(class_name=TERMS['pose-negatives'], weight=negatives,
                          **({'deg': [float(v) for v in deg]} if deg is not None else {})))
    if pose > 0:
        terms.append(dict(class_name=TERMS['pose'], weight=pose))
    if mix > 0:
        terms.append(dict(class_name=TERMS['attr-mix'], weight=mix))
    if terms:
        kwargs['terms'] = terms
    return kwargs

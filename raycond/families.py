"""The one table of network families and dataset classes, and the limits on what a file may say.

Everything that builds a network or a dataset from a name (train.py, the loaders, the safe
unpickler's rebuild, the GUI, the tests) looks the name up here. Classes are named as dotted
strings (`raycond` never imports `training`); a name read from a file is accepted only when it is
exactly one of these, and its keyword arguments only when each is listed below with a value of the
right type inside the bounds (`check_kwargs`). Nothing read from a file chooses a callable.

Lookups:
    family("raycond2").generator            -> 'training.networks_raycond2.Generator'
    family_of_class("training.networks_stylegan3.Generator") -> 'stylegan3'
    family_of_network(G), train_configs(), train_config("raycond3-t") -> ('raycond3', 't')
    is_network_class(name), is_dataset_class(name)
    check_kwargs(NETWORK_KWARGS, kwargs, "G_kwargs") -> first problem as a phrase, or None
"""

from __future__ import annotations

import dataclasses
import math


@dataclasses.dataclass(frozen=True)
class Family:
    """One network family: the classes of its generator and discriminator and how it is used."""

    generator: str              # dotted class name of G
    discriminator: str          # dotted class name of D
    camera: bool                # G takes the 25-value camera label as c
    backbone: str               # 'stylegan2' or 'stylegan3'
    defaults: tuple = ()        # (name, value) constructor arguments that make this family of its class
    trainable: bool = True      # train.py offers it as --cfg (StyleGAN3 backbones as NAME-t and NAME-r)


FAMILIES: dict[str, Family] = {    # ray-conditioned first: foreign sources that fit several match these first
    "raycond2": Family("training.networks_raycond2.Generator", "training.networks_raycond2.Discriminator",
                       camera=True, backbone="stylegan2", defaults=(("embedding", "plucker"),)),
    "posecond2": Family("training.networks_raycond2.Generator", "training.networks_raycond2.Discriminator",
                        camera=True, backbone="stylegan2",
                        defaults=(("embedding", "none"), ("camera_in_mapping", True))),
    "raycond3": Family("training.networks_raycond3.Generator", "training.networks_raycond2.Discriminator",
                       camera=True, backbone="stylegan3", defaults=(("embedding", "plucker"),)),
    "posecond3": Family("training.networks_raycond3.Generator", "training.networks_raycond2.Discriminator",
                        camera=True, backbone="stylegan3",
                        defaults=(("embedding", "none"), ("camera_in_mapping", True))),
    "stylegan2": Family("training.networks_stylegan2.Generator", "training.networks_stylegan2.Discriminator",
                        camera=False, backbone="stylegan2"),
    "stylegan3": Family("training.networks_stylegan3.Generator", "training.networks_stylegan2.Discriminator",
                        camera=False, backbone="stylegan3"),
    # The official Ray Conditioning release, reproduced with its own numerics (docs/safe-loading.md).
    "raycond-official2": Family("training.networks_official_raycond2.Generator",
                                "training.networks_stylegan2.Discriminator", camera=True, backbone="stylegan2",
                                trainable=False),
    "raycond-official3": Family("training.networks_official_raycond3.Generator",
                                "training.networks_stylegan2.Discriminator", camera=True, backbone="stylegan3",
                                trainable=False),
}

# Top-level objects of a snapshot that are neither G nor D.
AUXILIARY_CLASSES = ("training.augment.AugmentPipe",)


def family(name: str) -> Family:
    """The family called `name`; KeyError naming the known ones otherwise."""
    if name not in FAMILIES:
        raise KeyError(f"unknown network family {name!r}; expected one of {', '.join(FAMILIES)}")
    return FAMILIES[name]


def family_of_class(class_name: str) -> str | None:
    """The first family whose G or D is `class_name` (exact match), else None."""
    for name, fam in FAMILIES.items():
        if class_name in (fam.generator, fam.discriminator):
            return name
    return None


def family_of_network(net) -> str | None:
    """The family of a generator or discriminator object: its class matched exactly against the
    table, then, among the rows sharing that class (raycond2 and posecond2), the first whose
    `defaults` the network was constructed with (its recorded `init_kwargs`); a network built
    with other values (an ablation embedding) belongs to the first row of its class. None for
    classes loaded from pickled source, which only a trusted file brings."""
    cls = type(net)
    class_name = f"{cls.__module__}.{cls.__qualname__}"
    rows = [name for name, fam in FAMILIES.items() if class_name in (fam.generator, fam.discriminator)]
    if len(rows) < 2:
        return rows[0] if rows else None
    built_with = getattr(net, "init_kwargs", None) or {}
    for name in rows:
        defaults = FAMILIES[name].defaults
        if defaults and all(k in built_with and built_with[k] == v for k, v in defaults):
            return name
    return rows[0]


# StyleGAN3's two generator configurations: translation- and rotation-equivariant.
SG3_VARIANTS = ("t", "r")


def train_configs() -> tuple[str, ...]:
    """train.py's --cfg names, in table order: each trainable family, a StyleGAN3 backbone as NAME-t and NAME-r."""
    names = []
    for name, fam in FAMILIES.items():
        if fam.trainable:
            names += [f"{name}-{v}" for v in SG3_VARIANTS] if fam.backbone == "stylegan3" else [name]
    return tuple(names)


def train_config(cfg: str) -> tuple[str, str | None]:
    """'raycond3-r' -> ('raycond3', 'r'); 'raycond2' -> ('raycond2', None); ValueError for other names."""
    if cfg not in train_configs():
        raise ValueError(f"unknown --cfg {cfg!r}; expected one of {', '.join(train_configs())}")
    if cfg in FAMILIES:
        return cfg, None
    name, _, variant = cfg.rpartition("-")
    return name, variant


def network_classes() -> tuple[str, ...]:
    """Every class a network file may name at its top level, G and D of every family first."""
    names = []
    for fam in FAMILIES.values():
        names += [n for n in (fam.generator, fam.discriminator) if n not in names]
    return tuple(names) + AUXILIARY_CLASSES


def network_modules() -> tuple[str, ...]:
    """The modules those classes live in, in table order."""
    modules = []
    for name in network_classes():
        module = name.rpartition(".")[0]
        if module not in modules:
            modules.append(module)
    return tuple(modules)


def is_network_class(class_name) -> bool:
    return isinstance(class_name, str) and class_name in network_classes()


# ----------------------------------------------------------------------------- argument specs

@dataclasses.dataclass(frozen=True)
class Arg:
    """What one keyword argument may hold. kind: 'int', 'float', 'bool', 'str', 'dict' (nested
    arguments, checked against `NETWORK_KWARGS`) or 'list' (of numbers, at most `hi` items)."""

    kind: str
    lo: float = 0
    hi: float = 0
    none: bool = False          # None is allowed too
    choices: tuple = ()         # for 'str' (and strings an int/bool argument may also take)


def _int(lo, hi, none=False, choices=()):
    return Arg("int", lo, hi, none, choices)


def _float(lo, hi, none=False):
    return Arg("float", lo, hi, none)


_BOOL = Arg("bool")
_NESTED = Arg("dict")

# Limits on widths and counts: far above any released network (z_dim/w_dim 512, channel_max 1024,
# 1024² images, 14 SG3 layers), low enough that no constructor loops or allocates for long. The
# real bound on memory is the parameter estimate checked against the file's size (raycond.rebuild).
MAX_WIDTH = 8192
MAX_RESOLUTION = 4096
MAX_LAYERS = 64
ACTIVATIONS = ("linear", "relu", "lrelu", "tanh", "sigmoid", "elu", "selu", "softplus", "swish")

NETWORK_KWARGS: dict[str, Arg] = {
    # dimensions
    "z_dim": _int(0, MAX_WIDTH), "c_dim": _int(0, MAX_WIDTH), "w_dim": _int(1, MAX_WIDTH),
    "img_resolution": _int(4, MAX_RESOLUTION, none=True), "img_channels": _int(1, 16),
    "channel_base": _int(1, 1 << 21), "channel_max": _int(1, MAX_WIDTH),
    "embed_features": _int(1, MAX_WIDTH, none=True), "layer_features": _int(1, MAX_WIDTH, none=True),
    "cmap_dim": _int(1, MAX_WIDTH, none=True), "num_ws": _int(1, 1024, none=True),
    "num_layers": _int(0, MAX_LAYERS), "num_critical": _int(0, MAX_LAYERS), "num_fp16_res": _int(0, 32),
    "margin_size": _int(0, 512), "mbstd_group_size": _int(1, 4096, none=True), "mbstd_num_channels": _int(0, 64),
    "freeze_layers": _int(0, MAX_LAYERS), "freeze_embed": _BOOL, "ray_channels": _int(0, 64),
    "kernel_size": _int(1, 15), "conv_kernel": _int(1, 15), "filter_size": _int(1, 64),
    "lrelu_upsampling": _int(1, 16),
    # numbers
    "conv_clamp": _float(0, 1e9, none=True), "lr_multiplier": _float(0, 1e6), "w_avg_beta": _float(0, 1, none=True),
    "magnitude_ema_beta": _float(0, 1), "first_cutoff": _float(0, 1e4), "first_stopband": _float(0, 1e4),
    "last_stopband_rel": _float(0, 1e4), "output_scale": _float(-1e6, 1e6),
    "resample_filter": Arg("list", 0, 16),
    # choices
    "architecture": Arg("str", choices=("orig", "skip", "resnet")),
    "activation": Arg("str", choices=ACTIVATIONS),
    "embedding": Arg("str", choices=("plucker", "origin_dir", "two_plane", "none")),
    "fused_modconv_default": Arg("bool", choices=("inference_only",)),
    "use_fp16": _BOOL, "fp16_channels_last": _BOOL, "channels_last": _BOOL, "use_noise": _BOOL,
    "use_radial_filters": _BOOL, "ray_torgb": _BOOL, "camera_in_mapping": _BOOL,
    "ray_layers": Arg("list", 0, MAX_LAYERS, none=True),
    # nested argument dicts (checked with this same table)
    "mapping_kwargs": _NESTED, "synthesis_kwargs": _NESTED, "block_kwargs": _NESTED, "epilogue_kwargs": _NESTED,
    "layer_kwargs": _NESTED,
}
# AugmentPipe: probabilities and strengths.
for _name in ("xflip", "rotate90", "xint", "xint_max", "scale", "rotate", "aniso", "xfrac", "scale_std", "rotate_max",
              "aniso_std", "xfrac_std", "brightness", "contrast", "lumaflip", "hue", "saturation", "brightness_std",
              "contrast_std", "hue_max", "saturation_std", "noise", "cutout", "noise_std", "cutout_size"):
    NETWORK_KWARGS[_name] = _float(0, 1e3)


# ----------------------------------------------------------------------------- datasets

# Dataset classes a file (a snapshot's training_set_kwargs, a run's training_options.json) may
# name, with every keyword argument each accepts.
DATASET_CLASSES: dict[str, dict[str, Arg]] = {
    "training.dataset.ImageFolderDataset": {
        "path": Arg("str", 0, 4096), "resolution": _int(1, 1 << 16, none=True), "use_labels": _BOOL,
        "xflip": _BOOL, "max_size": _int(0, 1 << 40, none=True), "random_seed": _int(-(1 << 63), 1 << 63),
    },
}
# Keys older snapshots keep beside the dataset's arguments; they are data, never passed on.
DATASET_DATA_KEYS = ("class_name", "camera_stats")


def is_dataset_class(class_name) -> bool:
    return isinstance(class_name, str) and class_name in DATASET_CLASSES


def check_dataset_kwargs(kwargs) -> str | None:
    """Why `kwargs` (with class_name) cannot build a dataset, as a phrase; None when it can."""
    if not isinstance(kwargs, dict):
        return f"it is a {type(kwargs).__name__}, expected a dict"
    class_name = kwargs.get("class_name")
    if not is_dataset_class(class_name):
        return f"class_name {_short(class_name)} is not a dataset class of this project " \
               f"({', '.join(DATASET_CLASSES)})"
    args = {k: v for k, v in kwargs.items() if k not in DATASET_DATA_KEYS}
    return check_kwargs(DATASET_CLASSES[class_name], args, "")


# ----------------------------------------------------------------------------- checking

def _short(value, limit=60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _check_value(spec: Arg, value, where: str, depth: int) -> str | None:
    if value is None:
        return None if spec.none else f"{where} is None"
    if spec.kind == "dict":
        if depth >= 1:     # released networks nest one level (mapping_kwargs, block_kwargs, ...)
            return f"{where} nests argument dicts too deeply"
        return check_kwargs(NETWORK_KWARGS, value, where, depth + 1)
    if isinstance(value, str) and value in spec.choices:
        return None
    if spec.kind == "bool":
        ok = isinstance(value, bool) or (type(value) is int and value in (0, 1))
        return None if ok else f"{where} is {_short(value)}, expected true or false"
    if spec.kind == "str":
        if not isinstance(value, str):
            return f"{where} is {_short(value)}, expected a string"
        if spec.choices:
            return f"{where} is {_short(value)}, expected one of {', '.join(spec.choices)}"
        return None if len(value) <= spec.hi else f"{where} is longer than {int(spec.hi)} characters"
    if spec.kind == "list":
        if not isinstance(value, (list, tuple)) or len(value) > spec.hi:
            return f"{where} is {_short(value)}, expected a list of at most {int(spec.hi)} numbers"
        for i, v in enumerate(value):
            problem = _check_value(_float(-1e6, 1e6), v, f"{where}[{i}]", depth)
            if problem:
                return problem
        return None
    number = _number(value)
    if number is None or (spec.kind == "int" and number != int(number)):
        return f"{where} is {_short(value)}, expected {'an integer' if spec.kind == 'int' else 'a number'}"
    if not (spec.lo <= number <= spec.hi):
        return f"{where} is {_short(value)}, expected {spec.lo:g} to {spec.hi:g}"
    return None


def _number(value):
    """A finite int or float (numpy scalars included, bools not), else None."""
    if isinstance(value, bool) or not hasattr(value, "__float__") or isinstance(value, str):
        return None
    if type(value).__module__ not in ("builtins", "numpy"):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def check_kwargs(spec: dict[str, Arg], kwargs, where: str = "", depth: int = 0) -> str | None:
    """The first problem of `kwargs` against `spec` as a phrase naming the field, or None.
    Every key must be listed; every value must be of its kind and within its bounds."""
    if not isinstance(kwargs, dict):
        return f"{where or 'the arguments'} is a {type(kwargs).__name__}, expected a dict"
    if len(kwargs) > 128:
        return f"{where or 'the arguments'} has {len(kwargs)} entries"
    for key, value in kwargs.items():
        field = f"{where}.{key}" if where else str(key)
        if not isinstance(key, str) or key not in spec:
            return f"{_short(field)} is not an argument this project accepts"
        problem = _check_value(spec[key], value, field, depth)
        if problem:
            return problem
    return None

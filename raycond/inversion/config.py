"""The settings of one photo inversion, as one typed value.

`InversionConfig()` holds the defaults chosen by measurement on the bundled 64² network
(benchmarks/bench_inversion.py on development heads, seed 7; docs/performance.md): about 5 s of
CPU time per photo on one core. `config.replace(num_steps=50)` or
`invert(G, photo, num_steps=50)` change single fields. Every field is checked when the value is
made, so a wrong setting fails before a network is touched, naming the field.
"""

from __future__ import annotations

import dataclasses

LOSS_KINDS = ("auto", "lpips", "d", "pixel")
CAMERA_STARTS = ("encoder", "regressor", "grid")
REFINE_CAMERA = ("auto", "yes", "no")


@dataclasses.dataclass(frozen=True)
class InversionConfig:
    num_steps: int = 30             # pivot steps (latent, and camera unless kept), from the encoder's start
    tune_steps: int = 105           # pivotal tuning steps (0: no tuning)
    seed: int = 0                   # noise added to w, locality samples
    loss: str = "auto"              # 'auto', 'lpips', 'd' or 'pixel' (raycond.inversion.losses)
    w_plus: bool = False            # pivot in W+ (one w per layer) instead of W
    optimize_noise: bool = False    # also fit the per-layer constant noise maps (StyleGAN2-ADA projector)
    camera_start: str = "encoder"   # 'encoder' (camera + latent, raycond.inversion.encoder), 'regressor'
                                    # (camera only, raycond.pose_regressor) or 'grid' (mean face on a grid)
    encoder_samples: int = 8192     # encoder: generator samples it is trained on (once per network, cached)
    encoder_steps: int = 3000       # encoder: training steps
    pose_samples: int = 1024        # pose regressor: generator samples it is trained on (cached)
    pose_steps: int = 800           # pose regressor: training steps
    pose_spread: float = 0.0        # regressor: also refine starts this many degrees of yaw either side
    grid_yaws: int = 9              # camera grid: yaw values over the training range
    grid_pitches: int = 5           # camera grid: pitch values over the training range
    grid_keep: int = 3              # camera grid: cells (of distinct yaws) refined, plus the one nearest the mean pose
    grid_refine_steps: int = 30     # joint steps per kept start (regressor and grid starts)
    lr: float = 0.1                 # peak learning rate of w (z for mapping-camera networks: lr/2)
    camera_lr: float = 0.5          # peak learning rate of yaw/pitch, degrees
    refine_camera: str = "auto"     # refine yaw/pitch in the pivot: 'yes', 'no', or 'auto' (not when the
                                    # encoder's camera reader learnt from labelled photos: it is the better camera)
    noise_factor: float = 0.05      # initial noise added to w, times the std of W
    noise_ramp: float = 0.75        # fraction of the pivot steps over which that noise decays
    lr_rampdown: float = 0.25       # cosine decay over this last fraction of the steps
    lr_rampup: float = 0.05         # linear warm-up over this first fraction
    noise_reg_weight: float = 1e5   # noise-map regulariser (StyleGAN2-ADA), with optimize_noise
    tune_lr: float = 3e-3           # pivotal tuning learning rate (PTI's 3e-4: 1.7 dB lower input view, 0.4 dB novel)
    tune_from_res: int = 0          # tune only synthesis blocks at this resolution and above (0: all)
    locality_weight: float = 0.3    # weight of the other-camera / other-latent locality term
    locality_every: int = 2         # a locality reference render every this many tuning steps (the others
                                    # render the pivot alone: 105 such steps cost about what 75 with a
                                    # reference each did: +0.6-0.9 dB input view, -0.03 to -0.10 dB novel views)
    locality_bank: int = 8          # reference renders of each locality kind
    locality_radius: float = 30.0   # PTI's locality ball radius in W
    pixel_weight: float = 1.0       # weight of the pixel MSE inside every loss
    fp32: bool = False              # every layer in float32; default: the rule of every tool, the network's fp16 layers
                                    # in bfloat16 on a CPU with native bfloat16 and fp16 on CUDA
                                    # (raycond.generate.force_fp32_for; docs/performance.md)

    def __post_init__(self):
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            kind = {"int": int, "float": (int, float), "bool": bool, "str": str}[f.type]
            if isinstance(value, bool) and f.type != "bool" or not isinstance(value, kind):
                raise TypeError(f"inversion option {f.name} must be a {f.type}, got {value!r}")
        if self.num_steps < 0 or self.tune_steps < 0:
            raise ValueError(f"step counts must be non-negative, got num_steps={self.num_steps}, "
                             f"tune_steps={self.tune_steps}")
        if self.loss not in LOSS_KINDS:
            raise ValueError(f"unknown loss {self.loss!r}; expected one of {', '.join(LOSS_KINDS)}")
        if self.refine_camera not in REFINE_CAMERA:
            raise ValueError(f"refine_camera must be one of {', '.join(REFINE_CAMERA)}, got {self.refine_camera!r}")
        if self.camera_start not in CAMERA_STARTS:
            raise ValueError(f"camera_start must be one of {', '.join(CAMERA_STARTS)}, got {self.camera_start!r}")
        positive = ("encoder_samples", "encoder_steps", "pose_samples", "pose_steps", "grid_yaws", "grid_pitches",
                    "grid_keep", "locality_bank", "locality_every", "noise_ramp", "lr_rampdown", "lr_rampup")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"inversion option {name} must be positive, got {getattr(self, name)}")

    def replace(self, **changes) -> "InversionConfig":
        """A copy with some fields changed; an unknown name is a TypeError naming it."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise TypeError(f"unknown inversion option(s): {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **changes)

    @staticmethod
    def parse_assignment(text: str) -> tuple[str, object]:
        """'NAME=VALUE' (a benchmark's or script's --option) → (name, value typed as the field)."""
        name, sep, value = text.partition("=")
        fields = {f.name: f.type for f in dataclasses.fields(InversionConfig)}
        if not sep or name not in fields:
            raise ValueError(f"expected NAME=VALUE with NAME one of the InversionConfig fields, got {text!r}")
        kind = fields[name]
        if kind == "bool":
            return name, value.lower() in ("1", "true", "yes", "on")
        return name, {"int": int, "float": float, "str": str}[kind](value)

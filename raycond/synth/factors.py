"""The per-image generative factors of a synthetic-heads dataset, and the attribute classes made
from them.

Knowing what was drawn for every image lets metrics measure mode coverage exactly (how often each
hair style, skin tone, hair colour and background hue appears), which FID only approximates.
`write_dataset` stores a few factors per image in `dataset.json` under the key "synth_params"
(`[[relative_path, {factor: value}], ...]`, the same layout as "labels"; EG3D/StyleGAN readers
ignore the key), and the render settings under "synth". Datasets written before that carry only
camera labels: `rederive_factors` redraws the factors from the seed, because the writer draws
every head, then every camera, from one numpy Generator seeded with `--seed` (so image i's factors
depend only on seed, count and index). The cameras it redraws must equal the stored labels, which
tells a right seed from a wrong one.
"""

from __future__ import annotations

import colorsys

import numpy as np

from raycond.synth.cameras import sample_cameras
from raycond.synth.params import _HAIR, _SKIN, HAIR_STYLES, sample_head_params

# Factors stored per image (vectors as lists), rounded to 4 decimals to keep dataset.json small.
STORED_FACTORS = ('hair_style', 'skin_col', 'hair_col', 'bg_top', 'bg_bottom', 'cloth_col', 'iris_col', 'scale')

# Attribute name → class names. Colours are binned to the nearest palette colour the sampler
# starts from (it mixes in up to 35% of a second one, then jitters by ±6%); background hue in six
# 60° sectors of the top colour (the gradient's bottom is a darker, noisier copy of it).
ATTRIBUTES = {
    'hair_style': tuple(HAIR_STYLES),
    'skin': ('lightest', 'light', 'medium', 'dark', 'darkest'),
    'hair_colour': ('black', 'dark brown', 'brown', 'blond', 'red', 'grey', 'white'),
    'bg_hue': ('red', 'yellow', 'green', 'cyan', 'blue', 'magenta'),
}
# Class index that means "not visible in this image": hair colour of bald heads.
IGNORE = -1

DEFAULT_POSE = dict(yaw_std=20.0, pitch_std=8.0, max_yaw=60.0, max_pitch=25.0)


def factor_records(params: dict) -> list[dict]:
    """Per-image dicts of the STORED_FACTORS of a batch of heads (JSON-ready)."""
    cols = {k: np.round(params[k].numpy().astype(np.float64), 4) for k in STORED_FACTORS}
    n = len(cols['hair_style'])
    out = []
    for i in range(n):
        rec = {}
        for k in STORED_FACTORS:
            v = cols[k][i]
            rec[k] = int(v) if k == 'hair_style' else (v.tolist() if v.ndim else float(v))
        out.append(rec)
    return out


def _nearest(colours, palette) -> np.ndarray:
    d = ((np.asarray(colours, np.float64)[:, None, :] - palette[None].astype(np.float64)) ** 2).sum(-1)
    return d.argmin(axis=1)


def hue_bin(rgb, bins: int = 6) -> np.ndarray:
    """Hue sector (0 = red, then yellow, green, cyan, blue, magenta) of RGB colours in [0, 1]."""
    hues = np.array([colorsys.rgb_to_hsv(*c)[0] for c in np.asarray(rgb, np.float64)])
    return (np.floor(hues * bins + 0.5) % bins).astype(np.int64)


def attribute_classes(records) -> dict:
    """Factor records (as factor_records gives them) → {attribute: int64 array of class indices},
    IGNORE where the attribute is not visible."""
    style = np.array([int(r['hair_style']) for r in records], np.int64)
    hair = _nearest([r['hair_col'] for r in records], _HAIR)
    return {
        'hair_style': style,
        'skin': _nearest([r['skin_col'] for r in records], _SKIN),
        'hair_colour': np.where(style == 0, IGNORE, hair),
        'bg_hue': hue_bin([r['bg_top'] for r in records]),
    }


def draw_dataset(seed: int, count: int, yaw_std=20.0, pitch_std=8.0, max_yaw=60.0, max_pitch=25.0):
    """(head params, camera labels) exactly as write_dataset draws them for these settings."""
    rng = np.random.default_rng(seed)
    params = sample_head_params(rng, count)
    cams = sample_cameras(rng, count, yaw_std, pitch_std, max_yaw, max_pitch)
    return params, cams


def rederive_factors(labels, seeds=range(32), pose: dict | None = None):
    """Factor records of a dataset written without "synth_params", from its camera labels (N, 25)
    in image order: the first seed whose redrawn cameras equal the labels (within float32 rounding)
    wins. Returns (records, seed), or (None, None) if no seed matches (then the dataset was not
    written by `dataset_tool.py synth` with these pose settings, or used a seed outside `seeds`)."""
    labels = np.asarray(labels, np.float32)
    pose = dict(DEFAULT_POSE, **(pose or {}))
    for seed in seeds:
        rng = np.random.default_rng(seed)
        params = sample_head_params(rng, len(labels))
        cams = sample_cameras(rng, len(labels), pose['yaw_std'], pose['pitch_std'], pose['max_yaw'],
                              pose['max_pitch']).numpy()
        if cams.shape == labels.shape and np.allclose(cams, labels, atol=1e-5):
            return factor_records(params), int(seed)
    return None, None

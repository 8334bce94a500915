"""Turn a user's photo (path, PIL image or uint8 array) into the network's input format.

Inversion compares renders with the photo pixel for pixel, so the photo must be square and at the
network's resolution. Rather than failing on the common cases (a phone photo, a grey scan, a PNG
with an alpha channel), they are converted with one line saying what was done; only what cannot be
converted without guessing (transparent pixels, non-uint8 arrays) is refused with a sentence
saying what to do.
"""

from __future__ import annotations

import os

import numpy as np
import PIL.Image
import torch


class TargetImageError(ValueError):
    """The target photo is missing, unreadable or in a format that cannot be converted safely."""


def _open_path(path) -> PIL.Image.Image:
    path = os.fspath(path)
    if not os.path.exists(path):
        raise TargetImageError(f"target image not found: {path}")
    if os.path.isdir(path):
        raise TargetImageError(f"target {path} is a directory, expected an image file (PNG or JPEG)")
    try:
        img = PIL.Image.open(path)
        img.load()
    except (PIL.UnidentifiedImageError, OSError, SyntaxError) as e:
        raise TargetImageError(f"target {path} is not an image that can be read (expected a PNG or JPEG "
                               f"photo): {e}") from None
    return img


def _array_from_pil(img: PIL.Image.Image, notes: list) -> np.ndarray:
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
        alpha = np.asarray(img)[..., 3]
        if alpha.min() < 255:
            raise TargetImageError("target image has transparent pixels; flatten it onto a background "
                                   "(as in the training images) and save it without alpha")
        notes.append("dropped the (fully opaque) alpha channel")
        return np.asarray(img)[..., :3]
    if img.mode in ("L", "1", "I", "I;16", "F"):
        notes.append("grey image repeated into 3 channels")
        return np.asarray(img.convert("L"))[..., None].repeat(3, axis=2)
    return np.asarray(img.convert("RGB"))


def _array_from_numpy(arr: np.ndarray, notes: list) -> np.ndarray:
    if arr.dtype != np.uint8:
        raise TargetImageError(f"target array has dtype {arr.dtype}, expected uint8 values 0..255 "
                               f"(convert with (x * 255).round().astype(np.uint8))")
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
        raise TargetImageError(f"target array has shape {arr.shape}, expected H x W x 3 "
                               f"(or H x W grey, H x W x 4 opaque RGBA)")
    if arr.shape[2] == 4:
        if arr[..., 3].min() < 255:
            raise TargetImageError("target image has transparent pixels; flatten it onto a background "
                                   "(as in the training images) and pass RGB")
        notes.append("dropped the (fully opaque) alpha channel")
        arr = arr[..., :3]
    if arr.shape[2] == 1:
        notes.append("grey image repeated into 3 channels")
        arr = arr.repeat(3, axis=2)
    return arr


def load_photo(target, notes: list | None = None) -> np.ndarray:
    """Photo (path, PIL image or array) → H x W x 3 uint8 at its own size, with the conversions and
    refusals of `prepare_target` (face alignment reads the whole photo before it is cropped)."""
    notes = [] if notes is None else notes
    if isinstance(target, (str, os.PathLike)):
        arr = _array_from_pil(_open_path(target), notes)
    elif isinstance(target, PIL.Image.Image):
        arr = _array_from_pil(target, notes)
    elif isinstance(target, np.ndarray):
        arr = _array_from_numpy(target, notes)
    elif torch.is_tensor(target):
        raise TargetImageError("target is a torch tensor; pass an H x W x 3 uint8 numpy array, a PIL image "
                               "or a path")
    else:
        raise TargetImageError(f"target is a {type(target).__name__}; expected a path, a PIL image or an "
                               f"H x W x 3 uint8 array")
    return arr


def prepare_target(target, resolution: int, channels: int = 3) -> tuple[torch.Tensor, str | None]:
    """Photo → (1, channels, resolution, resolution) uint8 tensor, plus one message (or None).

    Non-square photos are centre-cropped to a square, other sizes resized (Lanczos); the message
    names every conversion so that the user knows the network saw something else than the file.
    """
    notes: list[str] = []
    arr = load_photo(target, notes)
    h, w = arr.shape[:2]
    if min(h, w) < 1:
        raise TargetImageError(f"target image is empty ({w}x{h})")
    if h != w:
        s = min(h, w)
        top, left = (h - s) // 2, (w - s) // 2
        arr = arr[top:top + s, left:left + s]
        notes.append(f"centre-cropped {w}x{h} to {s}x{s}")
    if arr.shape[0] != resolution:
        notes.append(f"resized {arr.shape[1]}x{arr.shape[0]} to {resolution}x{resolution}, the network's "
                     f"resolution")
        arr = np.asarray(PIL.Image.fromarray(np.ascontiguousarray(arr)).resize((resolution, resolution),
                                                                               PIL.Image.LANCZOS))
    if channels == 1:
        arr = np.asarray(PIL.Image.fromarray(np.ascontiguousarray(arr)).convert("L"))[..., None]
    elif channels != 3:
        raise TargetImageError(f"networks with {channels} image channels are not supported (expected 1 or 3)")
    out = torch.from_numpy(np.array(arr, dtype=np.uint8, copy=True)).permute(2, 0, 1).unsqueeze(0).contiguous()
    message = ("target: " + "; ".join(notes)) if notes else None
    return out, message

"""Photos of a network's domain with their true cameras: what the encoder's camera reader learns from.

The network's own samples teach the encoder which latent makes which face, but not which camera
a *photo* was taken from: a generator shows the camera it was asked for only to within its pose
error (`pose_err`, about 1.5° for the bundled network), and the encoder learns that error with it.
A dataset with camera labels (the network's training data, e.g. FFHQ with EG3D's `dataset.json`,
or `dataset_tool.py synth`) gives the true camera of real images instead. This module reads such
a dataset, a zip file or a folder with `dataset.json` holding `{"labels": [[path, [25 floats]]]}`,
into images at the encoder's size and their yaw/pitch in degrees.
"""

from __future__ import annotations

import io
import json
import os
import zipfile

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from raycond import camera as cam


class LabelledPhotosError(ValueError):
    """The dataset cannot teach a camera reader (missing, unreadable or without camera labels)."""


def _read_file(folder: str, name: str) -> bytes:
    with open(os.path.join(folder, name), "rb") as f:
        return f.read()


def _open(path: str):
    """(read(name) → bytes, the open zip file or None) of a zip file or a folder."""
    if os.path.isdir(path):
        return (lambda name: _read_file(path, name)), None
    if os.path.isfile(path) and zipfile.is_zipfile(path):
        z = zipfile.ZipFile(path)
        return z.read, z
    raise LabelledPhotosError(f"{path}: not found, or neither a zip file nor a folder")


def _camera_labels(read, path: str) -> list:
    try:
        labels = json.loads(read("dataset.json")).get("labels")
    except (KeyError, FileNotFoundError):
        raise LabelledPhotosError(f"{path} has no dataset.json: the camera reader needs images with camera "
                                  f"labels") from None
    except (ValueError, AttributeError):
        raise LabelledPhotosError(f"{path}: dataset.json is not a JSON object with 'labels'") from None
    good = [(n, v) for n, v in (labels or []) if isinstance(v, list) and len(v) == cam.LABEL_DIM]
    if not good:
        raise LabelledPhotosError(f"{path}: dataset.json holds no {cam.LABEL_DIM}-float camera labels "
                                  f"(class labels cannot teach a camera)")
    return good


def load(path: str, size: int, limit: int = 10000, progress=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(images uint8 (N,3,size,size), yaw/pitch (N,2) degrees) of up to `limit` labelled images,
    evenly spread over the dataset. progress(done, total) after every 256 images."""
    read, handle = _open(os.fspath(path))
    try:
        labels = _camera_labels(read, path)
        picked = np.linspace(0, len(labels) - 1, min(int(limit), len(labels))).round().astype(int)
        images, poses = [], []
        for i, k in enumerate(picked):
            name, label = labels[k]
            try:
                img = Image.open(io.BytesIO(read(name))).convert("RGB")
            except (KeyError, OSError) as e:
                raise LabelledPhotosError(f"{path}: cannot read image {name} ({type(e).__name__})") from None
            x = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1)[None].float()
            if x.shape[-1] != size or x.shape[-2] != size:
                x = F.interpolate(x, size=(size, size), mode="area" if x.shape[-1] > size else "bilinear")
            images.append(x.round().clamp(0, 255).to(torch.uint8))
            poses.append(label[:cam.POSE_DIM])
            if progress is not None and ((i + 1) % 256 == 0 or i + 1 == len(picked)):
                progress(i + 1, len(picked))
    finally:
        if handle is not None:
            handle.close()
    yaw, pitch, _ = cam.yaw_pitch_from_pose(torch.tensor(poses, dtype=torch.float32))
    return torch.cat(images), torch.stack([yaw, pitch], 1).rad2deg()

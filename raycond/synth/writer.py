"""Write image datasets as a ZIP or a folder of PNGs plus `dataset.json` (StyleGAN/EG3D layout).

Images go to `00000/img00000000.png`-style paths (1000 per subfolder). Everything is written to a
temporary sibling (`dnnlib.util.temp_path`) first and published on `close()` by
`dnnlib.util.publish`, so a failed or interrupted run never leaves a half-written dataset, and an
existing destination is only replaced when `force=True`. A run killed outright (SIGKILL) leaves
its hidden temporary; the next writer into the same folder removes it (`raycond.atomic_io`).
Disk errors are raised as `atomic_io.OutputError` naming the destination.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import zipfile

import numpy as np
from PIL import Image

import dnnlib
from raycond import atomic_io


def image_path(index: int, ext: str = 'png') -> str:
    """Relative archive path of image number `index`."""
    return f'{index // 1000:05d}/img{index:08d}.{ext}'


def training_size_problem(width: int, height: int) -> str | None:
    """What keeps `width`x`height` images from being a training set (train.py's rule, stated once
    for both train.py and dataset_tool.py), phrased to follow "Dataset X has ..."; None if fine."""
    if width != height:
        return (f'non-square images ({width}x{height}); expected square images '
                f'(use dataset_tool.py --transform=center-crop)')
    if width < 4 or (width & (width - 1)) != 0:
        return (f'images of {width}x{height}; expected a power-of-two resolution such as 64, 128, 256 or 512')
    return None


def is_zip_path(path: str) -> bool:
    return str(path).lower().endswith('.zip')


def check_destination(dest: str, force: bool) -> None:
    """Raise FileExistsError if `dest` exists (an empty folder is fine) and force is not set."""
    if not os.path.exists(dest) or force:
        return
    if os.path.isdir(dest) and not is_zip_path(dest) and not os.listdir(dest):
        return
    raise FileExistsError(f'destination {dest} already exists; use --force to overwrite it')


def encode_png(img: np.ndarray) -> bytes:
    """PNG bytes of a uint8 HWC (RGB) or HW (grayscale) image."""
    img = np.asarray(img)
    if img.dtype != np.uint8:
        raise ValueError(f'images must be uint8, got {img.dtype}')
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format='png', compress_level=1)
    return buf.getvalue()


class DatasetWriter:
    """Collect images and labels, then publish them atomically at `dest` (ZIP if it ends in .zip)."""

    def __init__(self, dest: str, force: bool = False):
        self.dest = os.path.abspath(str(dest))
        check_destination(self.dest, force)
        atomic_io.prepare_output_folder(os.path.dirname(self.dest), output=self.dest)
        self.tmp = dnnlib.util.temp_path(self.dest)
        self.zip = is_zip_path(self.dest)
        self.count = 0
        self._closed = False
        with self._naming_dest():
            if self.zip:
                self._zf = zipfile.ZipFile(self.tmp, 'w', compression=zipfile.ZIP_STORED)
            else:
                os.makedirs(self.tmp, exist_ok=False)

    @contextlib.contextmanager
    def _naming_dest(self):
        """Raise an OSError met while writing as an OutputError naming the destination, dropping the
        temporary: a dataset is published whole or not at all."""
        try:
            yield
        except OSError as e:
            self.abort()
            raise atomic_io.as_output_error(e, self.dest) from None

    def add_bytes(self, rel_path: str, data: bytes) -> None:
        with self._naming_dest():
            if self.zip:
                self._zf.writestr(rel_path, data)
            else:
                path = os.path.join(self.tmp, rel_path)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, 'wb') as f:
                    f.write(data)

    def add_image(self, rel_path: str, img: np.ndarray) -> None:
        """Store a uint8 image at `rel_path` (PNG)."""
        self.add_bytes(rel_path, encode_png(img))
        self.count += 1

    def close(self, labels=None, extra=None) -> None:
        """Write dataset.json ({"labels": labels or null}, plus the top-level keys in `extra`, which
        EG3D-format readers ignore) and move the dataset into place."""
        meta = json.dumps({'labels': labels, **(extra or {})}).encode('utf-8')
        self.add_bytes('dataset.json', meta)
        with self._naming_dest():
            if self.zip:
                self._zf.close()
            if os.path.isdir(self.dest) and not os.path.islink(self.dest):
                shutil.rmtree(self.dest)
            elif os.path.lexists(self.dest):
                os.remove(self.dest)
            dnnlib.util.publish(self.tmp, self.dest)
        self._closed = True

    def abort(self) -> None:
        """Drop everything written so far; the destination is left untouched."""
        if self._closed:
            return
        self._closed = True
        if self.zip:
            try:
                self._zf.close()   # may fail again on a full disk: the file goes either way
            except (OSError, AttributeError, ValueError):
                pass
            if os.path.exists(self.tmp):
                os.remove(self.tmp)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            self.abort()
        elif not self._closed:
            self.abort()
            raise RuntimeError('DatasetWriter.close(labels) was not called')
        return False

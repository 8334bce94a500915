"""Image datasets for training: a ZIP archive or a folder of PNG/JPEG images plus labels.

Labels come from a `dataset.json` beside the images, in EG3D's format
(`{"labels": [[relative_path, [25 floats]], ...]}`: camera-to-world matrix then normalized
intrinsics) or StyleGAN2-ADA's (`[relative_path, class_index]`, turned into one-hot vectors).
With `xflip=True` every image also appears mirrored, and for camera labels the mirrored copy
gets the mirrored camera (reflection through the world plane x = 0), so a flipped image keeps a
correct label. The interface (`ImageFolderDataset`, `get_label`, `get_details`, `label_shape`,
`resolution`, ...) follows StyleGAN2-ADA so training and metric code carry over.
"""

import json
import os
import zipfile

import numpy as np
import PIL.Image
import torch

import dnnlib
from raycond.camera import LABEL_DIM, camera_stats_from_labels, mirror_label, validate_label
from raycond.synth.writer import training_size_problem

import pyspng

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.webp')


class DatasetError(ValueError):
    """A dataset that cannot be used as given (message names the file and what was expected)."""


def _mirror_labels(labels):
    """Mirror (N, 25) camera labels through the world plane x = 0 via raycond.camera."""
    out = mirror_label(torch.as_tensor(labels, dtype=torch.float32))
    if isinstance(out, torch.Tensor):
        out = out.detach().cpu().numpy()
    return np.asarray(out, dtype=np.float32).reshape(labels.shape)


class Dataset(torch.utils.data.Dataset):
    """Base class: index bookkeeping, x-flips, max_size subsetting and label handling.

    Items are `(image uint8 CHW numpy, label float32 numpy)`.
    """

    def __init__(self, name, raw_shape, max_size=None, use_labels=False, xflip=False, random_seed=0):
        self._name = name
        self._raw_shape = list(raw_shape)
        self._use_labels = use_labels
        self._raw_labels = None
        self._mirrored_raw_labels = None
        self._file_labels = None  # labels as stored in the file, loaded even when unused
        self._label_shape = None

        self._raw_idx = np.arange(self._raw_shape[0], dtype=np.int64)
        if max_size is not None and self._raw_idx.size > max_size:
            np.random.RandomState(random_seed % (1 << 31)).shuffle(self._raw_idx)
            self._raw_idx = np.sort(self._raw_idx[:max_size])

        self._xflip = np.zeros(self._raw_idx.size, dtype=np.uint8)
        if xflip:
            self._raw_idx = np.tile(self._raw_idx, 2)
            self._xflip = np.concatenate([self._xflip, np.ones_like(self._xflip)])

    # --- labels -------------------------------------------------------------------------------

    def _get_file_labels(self):
        """Labels from the dataset file (None when there are none), cached."""
        if self._file_labels is None:
            labels = self._load_raw_labels()
            self._file_labels = labels if labels is not None else False
        return None if self._file_labels is False else self._file_labels

    def _get_raw_labels(self):
        if self._raw_labels is None:
            labels = self._get_file_labels() if self._use_labels else None
            if labels is None:
                labels = np.zeros([self._raw_shape[0], 0], dtype=np.float32)
            self._raw_labels = labels
        return self._raw_labels

    def _get_mirrored_raw_labels(self):
        if self._mirrored_raw_labels is None:
            self._mirrored_raw_labels = _mirror_labels(self._get_raw_labels())
        return self._mirrored_raw_labels

    def close(self):
        """Release open files (ZIP handles)."""

    def _load_raw_image(self, raw_idx):  # to be overridden by subclass
        raise NotImplementedError

    def _load_raw_labels(self):  # to be overridden by subclass
        raise NotImplementedError

    def __getstate__(self):
        return dict(self.__dict__, _raw_labels=None, _mirrored_raw_labels=None)

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def __len__(self):
        return self._raw_idx.size

    def __getitem__(self, idx):
        image = self._load_raw_image(self._raw_idx[idx])
        assert isinstance(image, np.ndarray)
        assert list(image.shape) == self.image_shape, (image.shape, self.image_shape)
        assert image.dtype == np.uint8
        if self._xflip[idx]:
            image = image[:, :, ::-1]
        return image.copy(), self.get_label(idx)

    def get_label(self, idx):
        """Label of item `idx` (one-hot for class labels; mirrored camera for x-flipped items)."""
        raw_idx = self._raw_idx[idx]
        if self.is_camera and self._xflip[idx]:
            return self._get_mirrored_raw_labels()[raw_idx].copy()
        label = self._get_raw_labels()[raw_idx]
        if label.dtype == np.int64:
            onehot = np.zeros(self.label_shape, dtype=np.float32)
            onehot[label] = 1
            label = onehot
        return label.copy()

    def get_details(self, idx):
        """Raw index, x-flip flag and raw (unmirrored, un-one-hot) label of item `idx`."""
        d = dnnlib.EasyDict()
        d.raw_idx = int(self._raw_idx[idx])
        d.xflip = (int(self._xflip[idx]) != 0)
        d.raw_label = self._get_raw_labels()[d.raw_idx].copy()
        return d

    # --- properties ---------------------------------------------------------------------------

    @property
    def name(self):
        return self._name

    @property
    def image_shape(self):
        return list(self._raw_shape[1:])

    @property
    def num_channels(self):
        assert len(self.image_shape) == 3  # CHW
        return self.image_shape[0]

    @property
    def resolution(self):
        assert len(self.image_shape) == 3  # CHW
        assert self.image_shape[1] == self.image_shape[2]
        return self.image_shape[1]

    @property
    def label_shape(self):
        if self._label_shape is None:
            raw_labels = self._get_raw_labels()
            if raw_labels.dtype == np.int64:
                self._label_shape = [int(np.max(raw_labels)) + 1]
            else:
                self._label_shape = list(raw_labels.shape[1:])
        return list(self._label_shape)

    @property
    def label_dim(self):
        assert len(self.label_shape) == 1
        return self.label_shape[0]

    @property
    def has_labels(self):
        return any(x != 0 for x in self.label_shape)

    @property
    def has_onehot_labels(self):
        return self._get_raw_labels().dtype == np.int64

    @property
    def file_label_kind(self):
        """'camera', 'class' or 'none': what the dataset file holds (regardless of use_labels)."""
        labels = self._get_file_labels()
        if labels is None:
            return 'none'
        if labels.dtype == np.int64:
            return 'class'
        return 'camera'

    @property
    def is_camera(self):
        """True when the labels in use are 25-float camera labels."""
        raw = self._get_raw_labels()
        return raw.dtype != np.int64 and raw.ndim == 2 and raw.shape[1] == LABEL_DIM

    @property
    def camera_stats(self):
        """Statistics of the camera labels of all items (mirrored ones included), or None."""
        if self.file_label_kind != 'camera':
            return None
        labels = self._get_file_labels()[self._raw_idx]
        if np.any(self._xflip):
            mirrored = _mirror_labels(self._get_file_labels())[self._raw_idx]
            labels = np.where(self._xflip[:, None].astype(bool), mirrored, labels)
        return camera_stats_from_labels(labels)


def _is_image_file(fname):
    return os.path.splitext(fname)[1].lower() in IMAGE_EXTENSIONS


class ImageFolderDataset(Dataset):
    """Dataset stored as a ZIP archive or a directory of images, with optional dataset.json."""

    def __init__(self, path, resolution=None, **super_kwargs):
        self._path = path
        self._zipfile = None

        if os.path.isdir(self._path):
            self._type = 'dir'
            self._all_fnames = {os.path.relpath(os.path.join(root, fname), start=self._path).replace('\\', '/')
                                for root, _dirs, files in os.walk(self._path) for fname in files}
        elif self._file_ext(self._path) == '.zip':
            self._type = 'zip'
            if not os.path.isfile(self._path):
                raise FileNotFoundError(f'Dataset not found: {self._path}')
            try:
                self._all_fnames = set(self._get_zipfile().namelist())
            except zipfile.BadZipFile as e:
                raise DatasetError(f'Dataset {self._path} is not a readable ZIP archive: {e}') from None
        elif not os.path.exists(self._path):
            raise FileNotFoundError(f'Dataset not found: {self._path}')
        else:
            raise DatasetError(f'Dataset {self._path} must be a directory or a .zip archive')

        PIL.Image.init()
        self._image_fnames = sorted(fname for fname in self._all_fnames if _is_image_file(fname))
        if len(self._image_fnames) == 0:
            raise DatasetError(f'No image files (PNG/JPEG) found in dataset {self._path}')

        name = os.path.splitext(os.path.basename(os.path.normpath(self._path)))[0]
        raw_shape = [len(self._image_fnames)] + self._scan_image_shape()
        if resolution is not None and (raw_shape[2] != resolution or raw_shape[3] != resolution):
            raise DatasetError(f'Dataset {self._path} has images of {raw_shape[3]}x{raw_shape[2]}, '
                               f'expected {resolution}x{resolution}')
        super().__init__(name=name, raw_shape=raw_shape, **super_kwargs)
        self._get_file_labels()  # validate labels now, so errors come before any training work

    @staticmethod
    def _file_ext(fname):
        return os.path.splitext(fname)[1].lower()

    def _get_zipfile(self):
        assert self._type == 'zip'
        # DataLoader workers are forked: a ZipFile inherited from the parent shares its file
        # offset with every other process, so concurrent reads corrupt each other (bad CRC).
        # Each process opens its own handle.
        if self._zipfile is None or getattr(self, '_zipfile_pid', None) != os.getpid():
            self._zipfile = zipfile.ZipFile(self._path)
            self._zipfile_pid = os.getpid()
        return self._zipfile

    def _open_file(self, fname):
        if self._type == 'dir':
            return open(os.path.join(self._path, fname), 'rb')
        if self._type == 'zip':
            return self._get_zipfile().open(fname, 'r')
        return None

    def close(self):
        try:
            if self._zipfile is not None:
                self._zipfile.close()
        finally:
            self._zipfile = None

    def __getstate__(self):
        return dict(super().__getstate__(), _zipfile=None)

    def _scan_image_shape(self):
        """Read every image header; check one size, square, power of two. Returns [C, H, W]."""
        first = None
        gray = True
        for fname in self._image_fnames:
            try:
                with self._open_file(fname) as f:
                    with PIL.Image.open(f) as img:
                        size, mode = img.size, img.mode
            except Exception as e:
                raise DatasetError(f'Cannot read image {fname} in dataset {self._path}: {e}') from None
            if first is None:
                first = (fname, size)
            elif size != first[1]:
                raise DatasetError(f'Dataset {self._path} mixes image sizes: {first[0]} is '
                                   f'{first[1][0]}x{first[1][1]} but {fname} is {size[0]}x{size[1]} '
                                   f'(use dataset_tool.py --resolution to resize)')
            gray = gray and mode in ('L', 'I;16', 'I', '1')
        w, h = first[1]
        problem = training_size_problem(w, h)
        if problem is not None:
            raise DatasetError(f'Dataset {self._path} has {problem}')
        return [1 if gray else 3, h, w]

    def _load_raw_image(self, raw_idx):
        fname = self._image_fnames[raw_idx]
        try:
            with self._open_file(fname) as f:
                if self._file_ext(fname) == '.png':
                    image = pyspng.load(f.read())
                else:
                    image = np.array(PIL.Image.open(f))
        except Exception as e:
            raise DatasetError(f'Cannot read image {fname} in dataset {self._path}: {e}') from None
        if image.ndim == 2:
            image = image[:, :, np.newaxis]  # HW => HWC
        if image.dtype != np.uint8:
            image = (image >> 8).astype(np.uint8) if image.dtype == np.uint16 else image.astype(np.uint8)
        channels = self._raw_shape[1]
        if image.shape[2] == 4:
            image = image[:, :, :3]  # drop alpha
        if image.shape[2] == 1 and channels == 3:
            image = np.repeat(image, 3, axis=2)
        elif image.shape[2] == 3 and channels == 1:
            image = image.mean(axis=2, keepdims=True).round().astype(np.uint8)
        if list(image.shape[:2]) != self._raw_shape[2:]:
            raise DatasetError(f'Image {fname} in dataset {self._path} is {image.shape[1]}x{image.shape[0]}, '
                               f'expected {self._raw_shape[3]}x{self._raw_shape[2]}')
        return image.transpose(2, 0, 1)  # HWC => CHW

    def _load_raw_labels(self):
        fname = 'dataset.json'
        if fname not in self._all_fnames:
            return None
        try:
            with self._open_file(fname) as f:
                data = json.load(f)
        except Exception as e:
            raise DatasetError(f'Cannot read {fname} in dataset {self._path}: {e}') from None
        labels = data.get('labels') if isinstance(data, dict) else None
        if labels is None:
            return None
        try:
            labels = dict((str(k).replace('\\', '/'), v) for k, v in labels)
        except (TypeError, ValueError):
            raise DatasetError(f'{fname} in dataset {self._path}: "labels" must be a list of '
                               f'[relative_path, label] pairs') from None
        missing = [f for f in self._image_fnames if f not in labels]
        if missing:
            raise DatasetError(f'{fname} in dataset {self._path} has no label for {len(missing)} of '
                               f'{len(self._image_fnames)} images (first: {missing[0]})')
        values = [labels[f] for f in self._image_fnames]
        if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            arr = np.array(values, dtype=np.int64)
            if arr.min() < 0:
                raise DatasetError(f'{fname} in dataset {self._path}: class labels must be >= 0')
            return arr
        lengths = {len(v) if isinstance(v, (list, tuple)) else -1 for v in values}
        if lengths != {LABEL_DIM}:
            bad = next(f for f, v in zip(self._image_fnames, values)
                       if not isinstance(v, (list, tuple)) or len(v) != LABEL_DIM)
            raise DatasetError(f'{fname} in dataset {self._path}: label of {bad} has the wrong length; '
                               f'expected {LABEL_DIM} camera values (EG3D format) or a class index')
        try:
            arr = np.array(values, dtype=np.float32)
        except (TypeError, ValueError):
            raise DatasetError(f'{fname} in dataset {self._path}: labels must be numbers') from None
        if not np.all(np.isfinite(arr)):
            bad = self._image_fnames[int(np.nonzero(~np.all(np.isfinite(arr), axis=1))[0][0])]
            raise DatasetError(f'{fname} in dataset {self._path}: label of {bad} has non-finite values')
        try:
            validate_label(torch.from_numpy(arr))
        except ValueError as e:
            raise DatasetError(f'{fname} in dataset {self._path}: invalid camera labels: {e}') from None
        return arr

"""Feature networks shared by the metrics and photo inversion: NVIDIA's Inception-v3 (FID, KID,
IS) and VGG16-LPIPS (PPL, precision/recall, the inversion loss) detector files.

They are fetched by URL through dnnlib's download cache (so a machine fetches each once and then
works offline), each URL overridable by an environment variable pointing at a local copy. One owner
for the URLs and the decoding lets `metrics/` and `raycond.inversion` agree on the same files.
"""

from __future__ import annotations

import io
import os
import pickle
import warnings
import zipfile

import torch

import dnnlib

INCEPTION_URL = 'https://api.ngc.nvidia.com/v2/models/nvidia/research/stylegan3/versions/1/files/metrics/inception-2015-12-05.pkl'
VGG16_URL = 'https://api.ngc.nvidia.com/v2/models/nvidia/research/stylegan3/versions/1/files/metrics/vgg16.pkl'
INCEPTION_ENV = 'RAYCOND_DETECTOR_URL_INCEPTION'
VGG16_ENV = 'RAYCOND_DETECTOR_URL_VGG16'


def inception_url() -> str:
    """URL of the Inception-v3 detector (FID, KID, IS); $RAYCOND_DETECTOR_URL_INCEPTION overrides it."""
    return os.environ.get(INCEPTION_ENV) or INCEPTION_URL


def vgg16_url() -> str:
    """URL of the VGG16 detector (PPL, precision/recall); $RAYCOND_DETECTOR_URL_VGG16 overrides it."""
    return os.environ.get(VGG16_ENV) or VGG16_URL


def get_feature_detector_name(url: str) -> str:
    return os.path.splitext(url.rstrip('/').split('/')[-1])[0]


_feature_detector_cache: dict = {}


def _decode_detector(data: bytes, url: str, device) -> torch.nn.Module:
    """Bytes of a detector file → module. Plain TorchScript archives (ZIP) go through
    torch.jit.load; NVIDIA's .pkl files are pickles of the module (pickle.load, as their loader
    does); a pickle that holds raw TorchScript bytes is accepted too."""
    if data[:2] == b'PK' and zipfile.is_zipfile(io.BytesIO(data)):
        return torch.jit.load(io.BytesIO(data), map_location=device)
    try:
        obj = pickle.loads(data)
    except Exception as e:
        raise ValueError(f'feature detector {url} is neither a TorchScript file nor a readable pickle '
                         f'({type(e).__name__}: {e})') from None
    if isinstance(obj, (bytes, bytearray)):
        return torch.jit.load(io.BytesIO(bytes(obj)), map_location=device)
    if isinstance(obj, dict) and len(obj) == 1 and isinstance(next(iter(obj.values())), torch.nn.Module):
        obj = next(iter(obj.values()))
    if not isinstance(obj, torch.nn.Module):
        raise ValueError(f'feature detector {url} holds a {type(obj).__name__}, expected a torch module')
    return obj


def get_feature_detector(url: str, device=torch.device('cpu'), num_gpus: int = 1, rank: int = 0,
                         verbose: bool = False) -> torch.nn.Module:
    """Load (once per process and device) the detector at `url` through dnnlib's download cache.

    Offline machines get dnnlib.util.DownloadError naming the URL and the cache file to fill by hand.
    """
    assert 0 <= rank < num_gpus
    key = (url, str(device))
    if key not in _feature_detector_cache:
        is_leader = rank == 0
        if not is_leader and num_gpus > 1:
            torch.distributed.barrier()  # the leader downloads first
        try:
            with dnnlib.util.open_url(url, verbose=(verbose and is_leader)) as f:
                data = f.read()
        except dnnlib.util.DownloadError as e:
            raise dnnlib.util.DownloadError(
                f'{e} (or point ${INCEPTION_ENV} / ${VGG16_ENV} at a local copy)') from None
        finally:
            if is_leader and num_gpus > 1:
                torch.distributed.barrier()
        with warnings.catch_warnings():
            warnings.filterwarnings('ignore', category=DeprecationWarning)  # torch.jit.load is deprecated
            det = _decode_detector(data, url, device)
        det = det.eval().to(device)
        for p in det.parameters():
            p.requires_grad_(False)
        _feature_detector_cache[key] = det
    return _feature_detector_cache[key]

"""Small utilities shared by every part of raycond (kept import-compatible with NVIDIA's dnnlib,
because pickles from StyleGAN2-ADA/StyleGAN3 refer to `dnnlib.util.EasyDict` by name)."""

from .util import EasyDict, make_cache_dir_path

__all__ = ["EasyDict", "make_cache_dir_path"]

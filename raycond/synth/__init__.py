"""Procedural posed datasets: random 3D heads rendered by a small SDF sphere tracer.

`sample_head_params` draws heads, `sample_cameras` draws FFHQ-like cameras, `render_heads`
renders them (real 3D, so images change correctly with the camera), and `write_dataset`
writes a StyleGAN/EG3D-style ZIP or folder with `dataset.json` camera labels.
"""

from raycond.synth.params import HAIR_STYLES, mirror_head_params, num_heads, sample_head_params, select_heads
from raycond.synth.cameras import sample_cameras
from raycond.synth.render import render_heads
from raycond.synth.dataset import write_dataset

__all__ = ['HAIR_STYLES', 'mirror_head_params', 'num_heads', 'sample_head_params', 'select_heads',
           'sample_cameras', 'render_heads', 'write_dataset']

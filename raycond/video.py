"""Write frames to a video file: the one writer behind gen_video.py, projector.py --save-video and the
visualizer's orbit recording, so that they agree on formats, frame times and errors.

- `.mp4`, `.mov`, `.mkv`: H.264 through imageio-ffmpeg (a dependency; it ships its own ffmpeg).
- `.gif`: Pillow. A GIF stores each frame's delay in hundredths of a second, and browsers show
  delays under 20 ms as 100 ms, so 1000/fps ms cannot be stored as is (30 fps is 33.3 ms): the
  delays alternate between neighbouring multiples of 10 ms so that frame i still starts at
  i·1000/fps ms and the whole loop lasts as long as the MP4 would. Above 50 fps a GIF plays at 50.
- Anything else is refused before a frame is rendered (`check_video_path`).
"""

from __future__ import annotations

import math
import os
from typing import Sequence

import imageio.v2 as imageio
import numpy as np
from PIL import Image

FFMPEG_EXTENSIONS = ('.mp4', '.mov', '.mkv')
VIDEO_EXTENSIONS = FFMPEG_EXTENSIONS + ('.gif',)
GIF_MIN_DELAY_MS = 20   # shorter delays are shown as 100 ms by browsers


def check_video_path(path: str, what: str = 'output') -> str:
    """`path` unchanged if its extension is one this module writes; ValueError naming them otherwise."""
    ext = os.path.splitext(os.fspath(path))[1].lower()
    if ext not in VIDEO_EXTENSIONS:
        raise ValueError(f'{what} {os.fspath(path)!r} must end in {", ".join(VIDEO_EXTENSIONS)} '
                         f'(the extension chooses the format)')
    return os.fspath(path)


def gif_frame_delays(num_frames: int, fps: float) -> list[int]:
    """Per-frame GIF delays in ms (multiples of 10, at least 20) whose running sum keeps frame i at
    i·1000/fps ms. gif_frame_delays(3, 30) == [30, 40, 30]."""
    if fps <= 0:
        raise ValueError(f'fps must be positive, got {fps}')
    step_cs = max(100.0 / fps, GIF_MIN_DELAY_MS / 10)        # centiseconds per frame
    ends = [math.floor((i + 1) * step_cs + 0.5) for i in range(num_frames)]
    return [10 * (b - a) for a, b in zip([0] + ends[:-1], ends)]


def _as_rgb(frame) -> np.ndarray:
    arr = np.asarray(frame)
    if arr.dtype != np.uint8 or arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (1, 3)):
        raise ValueError(f'video frames must be HxW, HxWx1 or HxWx3 uint8 arrays, got {arr.dtype} {arr.shape}')
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return np.repeat(arr, 3, axis=2) if arr.shape[2] == 1 else arr


def write_video(path: str, frames: Sequence, fps: float) -> str:
    """Write `frames` (uint8 HxW[x1|3] arrays) to `path` at `fps`; the extension picks the format.
    Returns `path`."""
    path = check_video_path(path)
    if len(frames) == 0:
        raise ValueError(f'no frames to write to {path}')
    if fps <= 0:
        raise ValueError(f'fps must be positive, got {fps}')
    rgb = [_as_rgb(f) for f in frames]
    if path.lower().endswith('.gif'):
        images = [Image.fromarray(f) for f in rgb]
        images[0].save(path, save_all=True, append_images=images[1:], duration=gif_frame_delays(len(images), fps),
                       loop=0, optimize=False, disposal=1)
        return path
    with imageio.get_writer(path, format='FFMPEG', mode='I', fps=fps, codec='libx264', quality=8,
                            macro_block_size=1, ffmpeg_log_level='error') as w:
        for f in rgb:
            w.append_data(f)
    return path

"""Write frames to a video file: the one writer behind gen_video.py, projector.py --save-video and the
visualizer's orbit recording, so that they agree on formats, frame times and errors.

- `.mp4`, `.mov`, `.mkv`: H.264 by the ffmpeg that imageio-ffmpeg ships (a dependency).
- `.gif`: Pillow. A GIF stores each frame's delay in hundredths of a second, and browsers show
  delays under 20 ms as 100 ms, so 1000/fps ms cannot be stored as is (30 fps is 33.3 ms): the
  delays alternate between neighbouring multiples of 10 ms so that frame i still starts at
  i·1000/fps ms and the whole loop lasts as long as the MP4 would. Above 50 fps a GIF plays at 50.
- Anything else is refused before a frame is rendered (`check_video_path`).
- Written whole or not at all (`raycond.atomic_io`): encoded to a hidden temporary name, checked
  (ffmpeg's exit status, and that every frame decodes back), then renamed.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import subprocess
import tempfile
from fractions import Fraction
from typing import Sequence

import imageio_ffmpeg
import numpy as np
from PIL import Image

from raycond import atomic_io

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


def write_video(path: str, frames: Sequence, fps: float, verbose: bool = False) -> str:
    """Write `frames` (uint8 HxW[x1|3] arrays) to `path` at `fps`; the extension picks the format.
    Returns `path`. The video appears whole or not at all (`raycond.atomic_io`): a failed or
    interrupted encode raises and leaves no file. ffmpeg's own messages are shown only when
    `verbose`; otherwise its last line goes into the one-line error."""
    path = check_video_path(path)
    if len(frames) == 0:
        raise ValueError(f'no frames to write to {path}')
    if fps <= 0:
        raise ValueError(f'fps must be positive, got {fps}')
    rgb = [_as_rgb(f) for f in frames]
    ext = os.path.splitext(path)[1].lower()
    if ext == '.gif':
        images = [Image.fromarray(f) for f in rgb]
        atomic_io.write_with(path, lambda f: images[0].save(
            f, format='GIF', save_all=True, append_images=images[1:], duration=gif_frame_delays(len(images), fps),
            loop=0, optimize=False, disposal=1))
        return path
    with atomic_io.atomic_path(path) as tmp:
        open(tmp, 'wb').close()   # a read-only or full folder fails here, as a plain OSError, before ffmpeg starts
        _encode_ffmpeg(tmp, path, rgb, fps, _FFMPEG_FORMATS[ext], verbose)
        _check_encoded(tmp, path, len(rgb))
    return path


_FFMPEG_FORMATS = {'.mp4': 'mp4', '.mov': 'mov', '.mkv': 'matroska'}   # the temporary name has no extension
_FFMPEG_CRF = 10   # what imageio's quality=8 gave for libx264, kept so videos look as before


def _encode_ffmpeg(tmp: str, path: str, rgb: list, fps: float, fmt: str, verbose: bool) -> None:
    """Pipe raw RGB frames into the bundled ffmpeg (H.264, yuv420p) writing `tmp`; raise on any
    failure. ffmpeg runs in its own session so that Ctrl-C reaches only us: we stop it ourselves."""
    h, w = rgb[0].shape[:2]
    rate = str(Fraction(fps).limit_denominator(1001))
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), '-y', '-v', 'error', '-f', 'rawvideo', '-vcodec', 'rawvideo',
           '-s', f'{w}x{h}', '-pix_fmt', 'rgb24', '-r', rate, '-i', '-', '-an', '-vcodec', 'libx264',
           '-pix_fmt', 'yuv420p', '-crf', str(_FFMPEG_CRF), '-f', fmt, tmp]
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                stderr=None if verbose else log, start_new_session=True)
        try:
            try:
                for f in rgb:
                    proc.stdin.write(np.ascontiguousarray(f).tobytes())
                proc.stdin.close()
            except BrokenPipeError:
                pass   # ffmpeg stopped reading: its exit status and message say why
            rc = proc.wait()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        finally:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        if rc != 0:
            log.seek(0)
            raise _ffmpeg_error(rc, log.read().decode('utf-8', 'replace'), path)


def _ffmpeg_error(rc: int, text: str, path: str) -> Exception:
    """ffmpeg's failure as one line: an OutputError when its text names a disk error."""
    for code in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EFBIG):
        if os.strerror(code) in text:
            return atomic_io.OutputError(code, path)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    detail = f': {lines[-1]}' if lines else ' (run with --verbose to see its messages)'
    return RuntimeError(f'ffmpeg failed (exit status {rc}) while writing {atomic_io.display_path(path)}{detail}')


def _check_encoded(tmp: str, path: str, num_frames: int) -> None:
    """Refuse an encode that exited 0 but is not a whole video (empty, or fewer frames decode)."""
    size = os.path.getsize(tmp)
    try:
        decoded = imageio_ffmpeg.count_frames_and_secs(tmp)[0] if size > 0 else 0
    except (RuntimeError, OSError):
        decoded = 0
    if decoded == num_frames:
        return
    folder = os.statvfs(os.path.dirname(os.path.abspath(tmp)))
    if folder.f_bavail == 0:
        raise atomic_io.OutputError(errno.ENOSPC, path)
    raise RuntimeError(f'ffmpeg wrote an incomplete video ({decoded} of {num_frames} frames decode, {size} bytes) '
                       f'while writing {atomic_io.display_path(path)}')

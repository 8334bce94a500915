"""gen_video.py: GIF frame count and size, keyframe interpolation, errors."""

import numpy as np
import PIL.Image
import pytest

from conftest import run_script
from gen_video import interpolate_keyframes


def run(*args):
    return run_script("gen_video.py", *args)


@pytest.mark.slow
def test_gif_frame_count_and_size(tmp_path, small_pickle):
    out = tmp_path / "orbit.gif"
    r = run(f"--network={small_pickle}", "--seeds=0-3", "--grid=1x2", "--num-keyframes=2", "--w-frames=3",
            "--orbit=turntable", f"--output={out}", "--device=cpu", "--fps=10")
    assert r.returncode == 0, r.stderr
    im = PIL.Image.open(out)
    assert im.n_frames == 6
    assert im.size == (64, 32)
    frames = []
    for i in range(im.n_frames):
        im.seek(i)
        frames.append(np.asarray(im.convert("RGB")).astype(int))
    assert np.abs(frames[0] - frames[2]).mean() > 0.5   # the camera moved


def test_interpolation_hits_keyframes():
    ws = np.random.RandomState(0).randn(4, 2, 3)
    out = interpolate_keyframes(ws, 20, loop=True)
    assert out.shape == (20, 2, 3)
    np.testing.assert_allclose(out[::5], ws, atol=1e-9)
    assert np.array_equal(interpolate_keyframes(ws[:1], 5)[3], ws[0])


def test_bad_output_extension(tmp_path, small_pickle):
    r = run(f"--network={small_pickle}", f"--output={tmp_path}/x.avi", "--device=cpu")
    assert r.returncode != 0 and "must end in .mp4, .mov, .mkv, .gif" in r.stderr and "Traceback" not in r.stderr

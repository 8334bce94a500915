"""raycond.video: the one video writer (gen_video.py, projector.py --save-video, the visualizer)."""

import numpy as np
import pytest
from PIL import Image

from raycond import video


def _frames(n, size=16):
    return [np.full((size, size, 3), 20 * i, dtype=np.uint8) for i in range(n)]


def test_gif_delays_keep_the_requested_frame_rate():
    delays = video.gif_frame_delays(30, 30)
    assert set(delays) == {30, 40} and sum(delays) == 1000


def test_gif_delays_never_drop_below_what_browsers_show():
    assert video.gif_frame_delays(4, 100) == [20, 20, 20, 20]


def test_gif_file_holds_every_frame_with_its_delay(tmp_path):
    out = video.write_video(str(tmp_path / "o.gif"), _frames(6), fps=30)
    with Image.open(out) as im:
        delays = []
        for i in range(im.n_frames):
            im.seek(i)
            delays.append(im.info["duration"])
    assert delays == video.gif_frame_delays(6, 30) and sum(delays) == 200


def test_gray_frames_are_written_as_rgb(tmp_path):
    frames = [np.full((8, 8, 1), v, np.uint8) for v in (0, 255)]
    out = video.write_video(str(tmp_path / "g.gif"), frames, fps=10)
    with Image.open(out) as im:
        assert im.n_frames == 2 and im.size == (8, 8)


def test_mp4_has_every_frame(tmp_path):
    import imageio.v2 as imageio
    out = video.write_video(str(tmp_path / "o.mp4"), _frames(5), fps=12)
    with imageio.get_reader(out) as reader:
        assert reader.count_frames() == 5 and reader.get_meta_data()["size"] == (16, 16)


def test_unknown_extension_is_refused_with_the_supported_ones(tmp_path):
    with pytest.raises(ValueError, match=r"must end in \.mp4, \.mov, \.mkv, \.gif"):
        video.write_video(str(tmp_path / "o.avi"), _frames(2), fps=10)
    assert not list(tmp_path.iterdir())


def test_no_frames_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="no frames"):
        video.write_video(str(tmp_path / "x.gif"), [], 10)

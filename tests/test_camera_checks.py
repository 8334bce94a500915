"""Cameras from the command line: gen_images.py refuses a pitch that is no camera and warns, as the
visualizer does, when a view lies outside the network's training poses."""

import os

import pytest

from conftest import run_script
from raycond import generate as gen


def run(*args):
    return run_script("gen_images.py", *args)


def test_pitch_must_be_a_camera():
    gen.check_pitch([0.0, 89.9, -89.9])
    for bad in (90.0, -95.0, float('nan')):
        with pytest.raises(ValueError, match='strictly between -90 and 90'):
            gen.check_pitch(bad)


def test_training_pose_range_is_the_visualizer_s():
    yaw, pitch = (-30.0, 30.0), (-10.0, 10.0)
    assert gen.outside_training_poses(yaw, pitch, 30.4, -10.4) is None      # the 0.5° allowance
    assert gen.outside_training_poses(yaw, pitch, 31.0, 0.0) == 'yaw 31 is outside the training range -30..30'
    assert 'pitch 12' in gen.outside_training_poses(yaw, pitch, 0.0, 12.0)
    assert gen.outside_training_poses(None, None, 400.0, 80.0) is None        # unknown ranges


def test_gen_images_refuses_a_pitch_beyond_90(tmp_path, small_pickle):
    r = run(f"--network={small_pickle}", "--seeds=0", "--pitch=95", f"--outdir={tmp_path}", "--device=cpu")
    assert r.returncode != 0 and '--pitch: pitch 95 degrees is not an orbit camera' in r.stderr
    assert 'Traceback' not in r.stderr and not os.listdir(tmp_path)


def test_gen_images_warns_outside_the_training_poses(tmp_path, small_pickle):
    r = run(f"--network={small_pickle}", "--seeds=0", "--yaw=0,400", f"--outdir={tmp_path}", "--device=cpu")
    assert r.returncode == 0, r.stderr
    assert r.stderr.count('warning:') == 1
    assert 'yaw 400 is outside the training range -30..30 (yaw 400 is the camera of yaw 40)' in r.stderr


def test_gen_video_refuses_a_pitch_range_beyond_90_and_warns_outside_the_training_poses(tmp_path, small_pickle):
    out = tmp_path / 'v.gif'
    r = run_script("gen_video.py", f"--network={small_pickle}", "--seeds=0", "--pitch-range=-10,95",
                   f"--output={out}", "--device=cpu")
    assert r.returncode != 0 and '--pitch-range: pitch 95 degrees is not an orbit camera' in r.stderr
    r = run_script("gen_video.py", f"--network={small_pickle}", "--seeds=0", "--yaw-range=-60,60", "--w-frames=2",
                   f"--output={out}", "--device=cpu")
    assert r.returncode == 0, r.stderr
    assert 'yaw -60 is outside the training range -30..30' in r.stderr and out.is_file()

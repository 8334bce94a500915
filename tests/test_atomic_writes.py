"""Every writer writes whole files or nothing (raycond.atomic_io): full disks, read-only folders,
Ctrl-C and SIGKILL against each tool, and the next run's cleanup of what a killed writer left.

Faults come from two places: a real tmpfs (mounted in the test's folder where the test may mount
one: root on Linux; those variants skip elsewhere), and `disk_fault`, which makes the file objects
that `dnnlib.util.write_file` (every atomic writer) opens fail at the Nth byte, in this process.
"""

from __future__ import annotations

import errno
import io
import json
import os
import pickle
import signal
import socket
import subprocess
import sys
import time
import zipfile

import numpy as np
import PIL.Image
import pytest
import torch
from click.testing import CliRunner

import dnnlib
from conftest import ROOT
from raycond import atomic_io, rundir

# ----------------------------------------------------------------------------- fault makers


class _FailingFile:
    """A file whose writes fail with `err` once `budget[0]` bytes (shared by every file) are used."""

    def __init__(self, f, budget, err):
        self._f, self._budget, self._err = f, budget, err

    def write(self, data):
        n = len(memoryview(data).cast('B'))
        if n > self._budget[0]:
            self._f.write(bytes(memoryview(data).cast('B')[:self._budget[0]]))   # a real disk takes what fits
            self._budget[0] = 0
            if isinstance(self._err, type) and issubclass(self._err, BaseException):
                raise self._err()
            raise OSError(self._err, os.strerror(self._err))
        self._budget[0] -= n
        return self._f.write(data)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()
        return False

    def __getattr__(self, name):
        return getattr(self._f, name)


@pytest.fixture
def disk_fault(monkeypatch):
    """disk_fault(err, after_bytes): atomic writes in this process fail with errno `err` (or raise
    the exception class `err`, e.g. KeyboardInterrupt) once `after_bytes` bytes have been written."""
    def arm(err=errno.ENOSPC, after_bytes=0):
        budget = [after_bytes]
        real_open = open

        def fopen(path, mode='r', *args, **kwargs):
            f = real_open(path, mode, *args, **kwargs)
            return _FailingFile(f, budget, err) if ('w' in mode or 'a' in mode) else f
        monkeypatch.setattr(dnnlib.util, 'open', fopen, raising=False)
    return arm


@pytest.fixture
def tmpfs(tmp_path):
    """tmpfs(size) -> a folder on a fresh tmpfs of that size; `readonly(folder)` remounts it read-only.
    Skips the test where mounting is not allowed."""
    mounts = []

    def make(size='64k', name='fs'):
        folder = tmp_path / name
        folder.mkdir()
        r = subprocess.run(['mount', '-t', 'tmpfs', '-o', f'size={size}', 'tmpfs', str(folder)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(f'cannot mount a tmpfs here ({r.stderr.strip() or r.returncode})')
        mounts.append(folder)
        return folder
    make.readonly = lambda folder: subprocess.run(['mount', '-o', 'remount,ro', str(folder)], check=True)
    yield make
    for folder in reversed(mounts):
        subprocess.run(['umount', '-l', str(folder)], capture_output=True)


def _fill(folder, leave_bytes=4096):
    """Fill the file system of `folder` but `leave_bytes` with a file named 'filler'."""
    st = os.statvfs(folder)
    with open(os.path.join(folder, 'filler'), 'wb') as f:
        f.write(b'\0' * max(0, st.f_bavail * st.f_frsize - leave_bytes))


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, '-c', 'pass'])
    p.wait()
    return p.pid


def _dead_writer_temp(folder, target, directory=False) -> str:
    """Plant what a writer killed while writing `target` in `folder` leaves behind."""
    host = os.path.basename(dnnlib.util.temp_path('x')).split('.tmp-', 1)[1].rsplit('-', 1)[0]
    path = os.path.join(folder, f'.{target}.tmp-{host}-{_dead_pid()}')
    if directory:
        os.makedirs(os.path.join(path, '00000'))
        with open(os.path.join(path, '00000', 'img00000000.png'), 'wb') as f:
            f.write(b'half')
    else:
        with open(path, 'wb') as f:
            f.write(b'half a file')
    return path


def _temporaries(folder) -> list[str]:
    return [n for n in os.listdir(folder) if atomic_io.is_temporary_name(n)]


def _error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith('Error:')]


def _default_sigint():
    # A suite started in the background by a non-interactive shell (`pytest ... &`) inherits SIGINT
    # ignored, and so would the tool: give it the disposition a terminal's Ctrl-C meets.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _tool(script, *args, cwd=ROOT, env=None, **popen):
    """Start a repository script in a fresh interpreter and its own process group, SIGINT at its default."""
    full_env = dict(os.environ, OMP_NUM_THREADS='1', **(env or {}))
    return subprocess.Popen([sys.executable, os.path.join(ROOT, script), *map(str, args)], cwd=cwd, env=full_env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
                            preexec_fn=_default_sigint, **popen)


def _wait_for(cond, proc, timeout=120.0):
    t0 = time.monotonic()
    while not cond():
        if proc.poll() is not None:
            raise AssertionError(f'the tool ended (status {proc.returncode}) before the fault: {proc.stdout.read()}')
        assert time.monotonic() - t0 < timeout, 'timed out waiting for the tool'
        time.sleep(0.02)


# ----------------------------------------------------------------------------- the helper itself

def test_output_error_is_one_line_naming_the_path_relative_to_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    e = atomic_io.OutputError(errno.ENOSPC, str(tmp_path / 'out' / 'seed0255.png'))
    assert str(e) == 'No space left on device while writing out/seed0255.png'
    assert e.errno == errno.ENOSPC and isinstance(e, OSError)
    assert str(atomic_io.OutputError(errno.EROFS, '/elsewhere/x.mp4')) == 'Read-only file system while writing /elsewhere/x.mp4'
    assert str(atomic_io.OutputError(errno.EDQUOT, 'q.pt')) == 'Disk quota exceeded while writing q.pt'


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, disk_fault):
    target = tmp_path / 'seed0000.png'
    target.write_bytes(b'the old image')
    disk_fault(errno.ENOSPC, after_bytes=10)
    with pytest.raises(atomic_io.OutputError, match='^No space left on device while writing .*seed0000.png$'):
        atomic_io.save_image(str(target), np.zeros((32, 32, 3), np.uint8))
    assert target.read_bytes() == b'the old image'
    assert os.listdir(tmp_path) == ['seed0000.png']


def test_torch_save_on_a_full_disk_says_so_instead_of_inline_container_text(tmp_path, disk_fault):
    disk_fault(errno.ENOSPC, after_bytes=1000)
    with pytest.raises(atomic_io.OutputError) as e:
        atomic_io.save_torch(str(tmp_path / 'inversion.pt'), {'w': torch.zeros(4096)})
    assert 'inline_container' not in str(e.value) and str(e.value).startswith('No space left on device while writing')
    # the primitive every cache writer uses keeps the cause too
    with pytest.raises(OSError) as e2:
        dnnlib.util.atomic_write(str(tmp_path / 'cache.pt'), lambda f: torch.save({'w': torch.zeros(4096)}, f))
    assert e2.value.errno == errno.ENOSPC and 'inline_container' not in str(e2.value)
    assert os.listdir(tmp_path) == []


def test_ctrl_c_inside_torch_save_stays_keyboard_interrupt_and_leaves_nothing(tmp_path, disk_fault):
    disk_fault(KeyboardInterrupt, after_bytes=1000)
    with pytest.raises(KeyboardInterrupt):
        dnnlib.util.atomic_write(str(tmp_path / 'probe.pt'), lambda f: torch.save({'w': torch.zeros(4096)}, f))
    assert os.listdir(tmp_path) == []


def test_published_files_get_the_umask_mode_not_0600(tmp_path):
    old = os.umask(0o022)
    try:
        with atomic_io.atomic_path(str(tmp_path / 'x.safetensors')) as tmp:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT, 0o600)   # what safetensors and mkstemp do
            os.write(fd, b'data')
            os.close(fd)
    finally:
        os.umask(old)
    assert os.stat(tmp_path / 'x.safetensors').st_mode & 0o777 == 0o644


def test_result_set_appears_whole_or_not_at_all(tmp_path, disk_fault):
    (tmp_path / 'proj.png').write_bytes(b'an earlier result')
    disk_fault(errno.ENOSPC, after_bytes=3000)
    with pytest.raises(atomic_io.OutputError, match='No space left on device while writing .*projected.npz'):
        with atomic_io.ResultSet() as rs:
            rs.save_image(str(tmp_path / 'target.png'), np.zeros((16, 16, 3), np.uint8))
            rs.save_image(str(tmp_path / 'proj.png'), np.zeros((16, 16, 3), np.uint8))
            rs.save_npz(str(tmp_path / 'projected.npz'), ws=np.random.default_rng(0).standard_normal((1, 8, 512)))
    assert sorted(os.listdir(tmp_path)) == ['proj.png'] and (tmp_path / 'proj.png').read_bytes() == b'an earlier result'


def test_result_set_interrupted_after_its_first_file_leaves_none(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with atomic_io.ResultSet() as rs:
            rs.save_image(str(tmp_path / 'target.png'), np.zeros((16, 16, 3), np.uint8))
            raise KeyboardInterrupt
    assert os.listdir(tmp_path) == []


def test_result_set_failing_rename_removes_the_members_already_published(tmp_path, monkeypatch):
    calls = []
    real = dnnlib.util.publish

    def publish(tmp, path):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(errno.EIO, 'Input/output error')
        real(tmp, path)
    monkeypatch.setattr(dnnlib.util, 'publish', publish)
    with pytest.raises(atomic_io.OutputError, match='Input/output error while writing .*b.png'):
        with atomic_io.ResultSet() as rs:
            rs.write_bytes(str(tmp_path / 'a.png'), b'a')
            rs.write_bytes(str(tmp_path / 'b.png'), b'b')
    assert os.listdir(tmp_path) == []


def test_clean_stale_temporaries_removes_dead_writers_files_and_folders_only(tmp_path):
    dead_file = _dead_writer_temp(tmp_path, 'seed0001.png')
    dead_folder = _dead_writer_temp(tmp_path, 'synth', directory=True)
    live = tmp_path / os.path.basename(dnnlib.util.temp_path(str(tmp_path / 'mine.png')))    # this process
    live.write_bytes(b'being written')
    parent = tmp_path / f'.x.png.tmp-{socket.gethostname()}-{os.getppid()}'
    other_host = tmp_path / f'.y.png.tmp-some-other-host-{_dead_pid()}'
    for p in (parent, other_host):
        p.write_bytes(b'?')
    (tmp_path / 'seed0000.png').write_bytes(b'a result')
    removed, freed = atomic_io.clean_stale_temporaries(str(tmp_path))
    assert sorted(removed) == sorted([dead_file, dead_folder]) and freed == len(b'half a file') + len(b'half')
    assert sorted(os.listdir(tmp_path)) == sorted([live.name, parent.name, other_host.name, 'seed0000.png'])
    assert atomic_io.describe_cleanup(removed, freed).startswith('Removed 2 temporary file(s) left by killed writers')


def test_jsonl_append_never_leaves_half_a_line(tmp_path, monkeypatch):
    path = tmp_path / 'stats.jsonl'
    atomic_io.append_line(str(path), json.dumps({'tick': 0}))
    real_write = os.write
    monkeypatch.setattr(atomic_io.os, 'write', lambda fd, data: real_write(fd, data[:5]))   # the disk fills mid-line
    with pytest.raises(atomic_io.OutputError, match='No space left on device while writing .*stats.jsonl'):
        atomic_io.append_line(str(path), json.dumps({'tick': 1, 'loss': 0.5}))
    monkeypatch.undo()
    atomic_io.append_line(str(path), json.dumps({'tick': 2}))
    assert [json.loads(line)['tick'] for line in path.read_text().splitlines()] == [0, 2]


# ----------------------------------------------------------------------------- gen_images

def _gen_images(args, cwd):
    import gen_images
    old = os.getcwd()
    os.chdir(cwd)
    try:
        return CliRunner().invoke(gen_images.main, [str(a) for a in args])
    finally:
        os.chdir(old)


def _assert_pngs_whole(folder):
    for name in os.listdir(folder):
        assert not atomic_io.is_temporary_name(name), name
        PIL.Image.open(os.path.join(folder, name)).load()   # a truncated PNG raises


def test_gen_images_on_a_full_disk_names_the_file_and_leaves_only_whole_pngs(tmp_path, small_pickle, disk_fault):
    disk_fault(errno.ENOSPC, after_bytes=3 * 2700)
    r = _gen_images([f'--network={small_pickle}', '--seeds=0-9', '--outdir=out', '--device=cpu'], tmp_path)
    assert r.exit_code == 1
    assert len(_error_lines(r.output)) == 1
    assert _error_lines(r.output)[0].startswith('Error: No space left on device while writing out/seed000')
    assert 'Traceback' not in r.output and 'Errno' not in r.output
    assert 0 < len(os.listdir(tmp_path / 'out')) < 10
    _assert_pngs_whole(tmp_path / 'out')


def test_gen_images_on_a_real_full_tmpfs(tmpfs, small_pickle):
    fs = tmpfs('24k')
    r = _gen_images([f'--network={small_pickle}', '--seeds=0-31', '--outdir=out', '--device=cpu'], fs)
    assert r.exit_code == 1 and _error_lines(r.output)[0].startswith('Error: No space left on device while writing out/seed00')
    _assert_pngs_whole(fs / 'out')


def test_gen_images_to_a_read_only_folder_fails_at_once_naming_it(tmpfs, small_pickle):
    fs = tmpfs('64k')
    tmpfs.readonly(fs)
    r = _gen_images([f'--network={small_pickle}', '--seeds=0', '--outdir=out', '--device=cpu'], fs)
    assert r.exit_code == 1 and _error_lines(r.output) == ['Error: Read-only file system while writing out']
    assert os.listdir(fs) == []


def test_gen_images_removes_pngs_half_written_by_a_killed_run(tmp_path, small_pickle):
    (tmp_path / 'out').mkdir()
    stale = _dead_writer_temp(tmp_path / 'out', 'seed0003.png')
    r = _gen_images([f'--network={small_pickle}', '--seeds=0', '--outdir=out', '--device=cpu'], tmp_path)
    assert r.exit_code == 0, r.output
    assert 'Removed 1 temporary file(s) left by killed writers' in r.output and not os.path.exists(stale)
    assert os.listdir(tmp_path / 'out') == ['seed0000.png']


# ----------------------------------------------------------------------------- gen_video / raycond.video

FRAMES = [np.random.default_rng(i).integers(0, 255, (64, 64, 3), dtype=np.uint8) for i in range(40)]


@pytest.mark.parametrize('ext', ['mp4', 'gif'])
def test_video_on_a_full_disk_is_an_error_and_no_file(tmpfs, ext):
    from raycond import video
    fs = tmpfs('64k')
    with pytest.raises(atomic_io.OutputError, match=f'No space left on device while writing .*v.{ext}$'):
        video.write_video(str(fs / f'v.{ext}'), FRAMES, 30)
    assert os.listdir(fs) == []


@pytest.mark.parametrize('ext', ['mp4', 'gif'])
def test_video_to_a_read_only_folder_is_an_error_and_no_file(tmpfs, ext):
    from raycond import video
    fs = tmpfs('1m')
    tmpfs.readonly(fs)
    with pytest.raises(atomic_io.OutputError, match=f'Read-only file system while writing .*v.{ext}$'):
        video.write_video(str(fs / f'v.{ext}'), FRAMES, 30)
    assert os.listdir(fs) == []


def test_video_gif_on_a_full_disk_leaves_no_empty_file(tmp_path, disk_fault):
    from raycond import video
    disk_fault(errno.ENOSPC, after_bytes=0)
    with pytest.raises(atomic_io.OutputError, match='No space left on device while writing'):
        video.write_video(str(tmp_path / 'v.gif'), FRAMES, 30)
    assert os.listdir(tmp_path) == []


def _fake_ffmpeg(tmp_path) -> str:
    """An 'ffmpeg' that writes a few bytes to its output, records its pid, then hangs (a long encode)."""
    script = tmp_path / 'fake-ffmpeg'
    script.write_text('#!/bin/sh\nfor a; do out="$a"; done\nprintf partial > "$out"\n'
                      f'echo $$ > {tmp_path / "ffmpeg.pid"}\nexec sleep 60\n')
    script.chmod(0o755)
    return str(script)


def test_video_failing_ffmpeg_is_one_line_and_no_file(tmp_path, monkeypatch):
    from raycond import video
    script = tmp_path / 'bad-ffmpeg'
    script.write_text('#!/bin/sh\ncat > /dev/null\necho "[libx264] some encoder complaint" >&2\n'
                      'echo "Conversion failed!" >&2\nexit 1\n')
    script.chmod(0o755)
    monkeypatch.setattr(video.imageio_ffmpeg, 'get_ffmpeg_exe', lambda: str(script))
    with pytest.raises(RuntimeError, match=r'^ffmpeg failed \(exit status 1\) while writing .*v.mp4: Conversion failed!$'):
        video.write_video(str(tmp_path / 'v.mp4'), FRAMES[:3], 30)
    assert sorted(os.listdir(tmp_path)) == ['bad-ffmpeg']


def test_video_ffmpeg_that_exits_0_without_a_whole_video_is_refused(tmp_path, monkeypatch):
    from raycond import video
    script = tmp_path / 'lying-ffmpeg'
    script.write_text('#!/bin/sh\ncat > /dev/null\nexit 0\n')   # reads every frame, writes nothing
    script.chmod(0o755)
    monkeypatch.setattr(video.imageio_ffmpeg, 'get_ffmpeg_exe', lambda: str(script))
    with pytest.raises(RuntimeError, match=r'ffmpeg wrote an incomplete video \(0 of 3 frames'):
        video.write_video(str(tmp_path / 'v.mp4'), FRAMES[:3], 30)
    assert sorted(os.listdir(tmp_path)) == ['lying-ffmpeg']


def test_gen_video_on_a_full_disk_exits_1_with_one_line_and_no_ffmpeg_text(tmpfs, small_pickle):
    fs = tmpfs('256k')
    _fill(fs, leave_bytes=4096)
    p = _tool('gen_video.py', f'--network={small_pickle}', '--seeds=0-3', '--grid=2x2', '--w-frames=30',
              '--output=v.mp4', '--device=cpu', cwd=fs)
    out, _ = p.communicate(timeout=300)
    assert p.returncode == 1, out
    lines = [line for line in out.splitlines() if 'Rendering' not in line]
    assert lines[-1] == 'Error: No space left on device while writing v.mp4', out
    assert 'Wrote' not in out and 'av_interleaved' not in out and 'Error writing trailer' not in out
    assert os.listdir(fs) == ['filler']


def test_gen_video_to_a_read_only_folder_never_says_wrote(tmpfs, small_pickle):
    fs = tmpfs('1m')
    (fs / 'videos').mkdir()
    tmpfs.readonly(fs)
    p = _tool('gen_video.py', f'--network={small_pickle}', '--seeds=0', '--w-frames=4', f'--output={fs}/videos/v.mp4',
              '--device=cpu')
    out, _ = p.communicate(timeout=300)
    assert p.returncode == 1 and 'Wrote' not in out, out
    assert out.strip().splitlines()[-1] == f'Error: Read-only file system while writing {fs}/videos/v.mp4', out
    assert os.listdir(fs / 'videos') == []


def _start_gen_video_with_hanging_ffmpeg(tmp_path, small_pickle):
    out_dir = tmp_path / 'videos'
    out_dir.mkdir()
    p = _tool('gen_video.py', f'--network={small_pickle}', '--seeds=0', '--w-frames=8', '--output=videos/orbit.mp4',
              '--device=cpu', cwd=tmp_path, env={'IMAGEIO_FFMPEG_EXE': _fake_ffmpeg(tmp_path)})
    _wait_for(lambda: (tmp_path / 'ffmpeg.pid').exists() and os.path.getsize(tmp_path / 'ffmpeg.pid') > 0, p)
    return p, out_dir


def _kill_fake_ffmpeg(tmp_path):
    try:
        os.kill(int((tmp_path / 'ffmpeg.pid').read_text()), signal.SIGKILL)
    except (OSError, ValueError):
        pass


def test_ctrl_c_while_gen_video_encodes_leaves_no_file(tmp_path, small_pickle):
    p, out_dir = _start_gen_video_with_hanging_ffmpeg(tmp_path, small_pickle)
    try:
        assert len(_temporaries(out_dir)) == 1          # the encode has begun
        os.killpg(p.pid, signal.SIGINT)                  # what Ctrl-C in a terminal sends
        out, _ = p.communicate(timeout=60)
    finally:
        _kill_fake_ffmpeg(tmp_path)
    assert p.returncode != 0 and 'Traceback' not in out, out
    assert out.strip().splitlines()[-1] == 'Aborted!'
    assert os.listdir(out_dir) == []


@pytest.mark.slow
def test_gen_video_killed_while_encoding_is_cleaned_by_the_next_run(tmp_path, small_pickle):
    p, out_dir = _start_gen_video_with_hanging_ffmpeg(tmp_path, small_pickle)
    try:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait(timeout=60)
    finally:
        _kill_fake_ffmpeg(tmp_path)
    left = _temporaries(out_dir)
    assert len(left) == 1 and not os.path.exists(out_dir / 'orbit.mp4')
    p = _tool('gen_video.py', f'--network={small_pickle}', '--seeds=0', '--w-frames=4', '--output=videos/orbit.mp4',
              '--device=cpu', cwd=tmp_path)
    out, _ = p.communicate(timeout=300)
    assert p.returncode == 0, out
    assert f'Removed 1 temporary file(s) left by killed writers' in out and left[0] in out
    assert os.listdir(out_dir) == ['orbit.mp4']


# ----------------------------------------------------------------------------- dataset_tool

def _dataset_tool(args):
    import dataset_tool
    return CliRunner().invoke(dataset_tool.cli, [str(a) for a in args])


def test_dataset_tool_on_a_full_disk_writes_no_dataset(tmpfs):
    fs = tmpfs('48k')
    for dest in ('s.zip', 'folder'):
        r = _dataset_tool(['synth', '--dest', fs / dest, '--count=64', '--resolution=32', '--workers=1'])
        assert r.exit_code == 1 and _error_lines(r.output) == [f'Error: No space left on device while writing {fs / dest}']
        assert os.listdir(fs) == []


def test_dataset_tool_on_a_full_disk_injected(tmp_path, disk_fault, monkeypatch):
    # the folder layout writes through plain open() in the writer; fail the folder's 5th image
    from raycond.synth import writer
    calls = [0]
    real_open = open

    def fopen(path, mode='r', *a, **k):
        if 'w' in mode:
            calls[0] += 1
            if calls[0] == 5:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_open(path, mode, *a, **k)
    monkeypatch.setattr(writer, 'open', fopen, raising=False)
    r = _dataset_tool(['synth', '--dest', tmp_path / 'folder', '--count=8', '--resolution=16', '--workers=1'])
    assert r.exit_code == 1 and _error_lines(r.output) == [f'Error: No space left on device while writing {tmp_path / "folder"}']
    assert os.listdir(tmp_path) == []


def test_dataset_tool_to_a_read_only_folder_names_it(tmpfs):
    fs = tmpfs('64k')
    tmpfs.readonly(fs)
    r = _dataset_tool(['synth', '--dest', fs / 's.zip', '--count=4', '--resolution=16', '--workers=1'])
    assert r.exit_code == 1
    assert _error_lines(r.output) == [f'Error: Read-only file system while writing {fs / "s.zip"}']


def test_dataset_tool_removes_what_a_killed_run_left(tmp_path):
    zip_temp = _dead_writer_temp(tmp_path, 's.zip')
    folder_temp = _dead_writer_temp(tmp_path, 'heads', directory=True)
    r = _dataset_tool(['synth', '--dest', tmp_path / 's.zip', '--count=2', '--resolution=16', '--workers=1'])
    assert r.exit_code == 0, r.output
    assert 'Removed 2 temporary file(s) left by killed writers' in r.output
    assert not os.path.exists(zip_temp) and not os.path.exists(folder_temp)
    assert os.listdir(tmp_path) == ['s.zip'] and len(zipfile.ZipFile(tmp_path / 's.zip').namelist()) == 3


def test_dataset_tool_sigkill_then_next_run_cleans_the_hidden_zip(tmp_path):
    p = _tool('dataset_tool.py', 'synth', '--dest', tmp_path / 's.zip', '--count=4096', '--resolution=16',
              '--workers=1', '--batch=16')
    _wait_for(lambda: _temporaries(tmp_path), p)
    os.killpg(p.pid, signal.SIGKILL)
    p.wait(timeout=60)
    left = _temporaries(tmp_path)
    assert len(left) == 1 and left[0].startswith('.s.zip.tmp-')
    r = _dataset_tool(['synth', '--dest', tmp_path / 's.zip', '--count=2', '--resolution=16', '--workers=1'])
    assert r.exit_code == 0 and 'Removed 1 temporary file(s)' in r.output
    assert os.listdir(tmp_path) == ['s.zip']


@pytest.mark.slow
def test_ctrl_c_while_dataset_tool_workers_start_prints_one_line(tmp_path):
    p = _tool('dataset_tool.py', 'synth', '--dest', tmp_path / 's.zip', '--count=256', '--resolution=16',
              '--workers=2', '--batch=16')
    _wait_for(lambda: _temporaries(tmp_path), p)     # the writer opens once the workers are being started
    time.sleep(0.3)
    os.killpg(p.pid, signal.SIGINT)
    out, _ = p.communicate(timeout=120)
    assert p.returncode == 130, out
    assert out.strip().splitlines() == ['Interrupted; the destination was not written (no partial dataset left behind).']
    assert os.listdir(tmp_path) == []


# ----------------------------------------------------------------------------- metrics

def test_metric_cache_on_a_full_disk_is_one_line_and_no_cache(tmp_path, disk_fault):
    from metrics import metric_utils
    stats = metric_utils.FeatureStats(capture_mean_cov=True)
    stats.append(np.random.default_rng(0).standard_normal((8, 512)).astype(np.float32))
    disk_fault(errno.ENOSPC, after_bytes=4096)
    with pytest.raises(atomic_io.OutputError, match='^No space left on device while writing .*stats.pkl$'):
        stats.save(str(tmp_path / 'gan-metrics' / 'stats.pkl'))
    assert os.listdir(tmp_path / 'gan-metrics') == []


def test_metric_cache_write_removes_dead_writers_temporaries(tmp_path):
    from metrics import metric_utils
    (tmp_path / 'gan-metrics').mkdir()
    stale = _dead_writer_temp(tmp_path / 'gan-metrics', 'other-stats.pkl')
    stats = metric_utils.FeatureStats(capture_all=True)
    stats.append(np.zeros((2, 4), np.float32))
    stats.save(str(tmp_path / 'gan-metrics' / 'stats.pkl'))
    assert not os.path.exists(stale) and os.listdir(tmp_path / 'gan-metrics') == ['stats.pkl']


def test_calc_metrics_on_a_full_cache_disk_is_one_line(tmp_path, tmpfs, monkeypatch, tiny_generator):
    import calc_metrics
    from metrics import metric_utils
    from test_calc_metrics import make_run, save_fake_detector, write_gradient_dataset
    url = save_fake_detector(tmp_path / 'fake_detector.pt')
    monkeypatch.setenv(metric_utils.INCEPTION_ENV, url)
    cache = tmpfs('64k', name='cache')
    _fill(cache, leave_bytes=0)
    monkeypatch.setenv('DNNLIB_CACHE_DIR', str(cache))
    data = write_gradient_dataset(tmp_path / 'data.zip', n=40, res=32)
    _run_dir, snap = make_run(tmp_path, tiny_generator(res=32), data)
    r = CliRunner().invoke(calc_metrics.main, ['--network', str(snap), '--metrics', 'fid100_full', '--quiet'])
    assert r.exit_code == 1, r.output
    assert len(_error_lines(r.output)) == 1
    assert 'No space left on device while writing' in r.output and 'gan-metrics' in r.output
    assert 'inline_container' not in r.output and 'Traceback' not in r.output
    assert not any(atomic_io.is_temporary_name(n) or n.endswith('.pkl') for _d, _s, names in os.walk(cache) for n in names)


# ----------------------------------------------------------------------------- projector

@pytest.fixture
def photo(tmp_path):
    path = tmp_path / 'photo.png'
    PIL.Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(path)
    return str(path)


PROJECTED = {'target.png', 'proj.png', 'projected.npz', 'inversion.pt', 'views.png'}


def _projector(args, monkeypatch, tmp_path):
    import projector
    from raycond import feature_nets
    monkeypatch.setenv(feature_nets.VGG16_ENV, 'file://' + str(tmp_path / 'no-vgg16.pkl'))
    return CliRunner().invoke(projector.main, [str(a) for a in args])


@pytest.mark.parametrize('fault', [errno.ENOSPC, KeyboardInterrupt])
def test_projector_writes_its_result_as_a_complete_set_or_nothing(tmp_path, small_pickle, photo, disk_fault,
                                                                    monkeypatch, fault):
    out = tmp_path / 'out'
    disk_fault(fault, after_bytes=6000)    # past target.png and proj.png, inside the later files
    r = _projector([f'--network={small_pickle}', f'--target={photo}', f'--outdir={out}', '--num-steps=2',
                    '--tune-steps=1', '--device=cpu'], monkeypatch, tmp_path)
    assert r.exit_code == 1, r.output
    if fault == errno.ENOSPC:
        assert len(_error_lines(r.output)) == 1 and 'No space left on device while writing' in r.output, r.output
        assert 'inline_container' not in r.output
    assert os.listdir(out) == []


def test_projector_removes_what_a_killed_run_left(tmp_path, small_pickle, photo, monkeypatch):
    out = tmp_path / 'out'
    out.mkdir()
    stale = _dead_writer_temp(out, 'projected.npz')
    r = _projector([f'--network={small_pickle}', f'--target={photo}', f'--outdir={out}', '--num-steps=2',
                    '--tune-steps=1', '--device=cpu'], monkeypatch, tmp_path)
    assert r.exit_code == 0, r.output
    assert not os.path.exists(stale) and PROJECTED <= set(os.listdir(out))
    assert not _temporaries(out)


# ----------------------------------------------------------------------------- training runs

def test_resume_auto_reuses_a_run_directory_left_without_a_snapshot(tmp_path):
    outdir = str(tmp_path)
    first = rundir.next_run_dir(outdir, 'raycond2-d')
    os.makedirs(first)
    (tmp_path / os.path.basename(first) / 'stats.jsonl').write_text('{"tick": 0}\n')
    (tmp_path / os.path.basename(first) / 'log.txt').write_text('attempt 1\n')
    assert rundir.resume_run_dir(outdir, 'raycond2-d') == first
    rundir.claim_run_dir(first, {'run_dir': first}, reuse=True)
    assert sorted(os.listdir(first)) == ['.training.lock', 'log.txt', 'training_options.json']
    assert json.loads(open(os.path.join(first, 'training_options.json')).read()) == {'run_dir': first}


def test_resume_auto_makes_a_new_run_directory_after_one_with_a_snapshot(tmp_path):
    run = tmp_path / '00000-raycond2-d'
    run.mkdir()
    (run / 'network-snapshot-000004.pkl').write_bytes(b'x')
    assert rundir.resume_run_dir(str(tmp_path), 'raycond2-d') is None
    assert rundir.resume_run_dir(str(tmp_path), 'stylegan2-d') is None


def test_resume_auto_never_takes_the_run_directory_of_a_live_training(tmp_path):
    run = str(tmp_path / '00000-raycond2-d')
    holder = subprocess.Popen([sys.executable, '-c', 'import sys; sys.path.insert(0, sys.argv[1]); '
                               'from raycond import rundir; rundir.claim_run_dir(sys.argv[2], {}); '
                               'print("held", flush=True); sys.stdin.read()', ROOT, run],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == 'held'
        assert rundir.resume_run_dir(str(tmp_path), 'raycond2-d') is None
        with pytest.raises(FileExistsError, match='is in use by another training process'):
            rundir.claim_run_dir(run, {}, reuse=True)
    finally:
        holder.kill()
        holder.wait()
    assert rundir.resume_run_dir(str(tmp_path), 'raycond2-d') == run      # the lock died with its holder


@pytest.mark.slow
def test_killed_resume_auto_attempts_leave_one_run_directory(tmp_path):
    from conftest import make_camera_zip
    data = make_camera_zip(tmp_path / 'd.zip', n=8, res=16)
    outdir = tmp_path / 'runs'
    args = ['train.py', '--outdir', outdir, '--data', data, '--resume=auto', '--batch=4', '--gamma=1', '--cbase=256',
            '--cmax=16', '--map-depth=1', '--workers=0', '--snap=1', '--metrics=none', '--tick=0.008', '--kimg=1']
    def log_says(n):
        logs = [os.path.join(d, 'log.txt') for _i, d in rundir.list_runs(str(outdir))]
        return any(os.path.exists(f) and open(f).read().count('Constructing networks') >= n for f in logs)

    for attempt in range(1, 4):
        p = _tool(*args)
        _wait_for(lambda: log_says(attempt), p)
        os.killpg(p.pid, signal.SIGKILL)           # before its first snapshot
        p.wait(timeout=60)
    runs = rundir.list_runs(str(outdir))
    assert len(runs) == 1 and rundir.newest_snapshot(runs[0][1]) is None
    assert open(os.path.join(runs[0][1], 'log.txt')).read().count('Constructing networks') == 3   # one log, appended


@pytest.mark.slow
def test_ctrl_c_during_training_says_how_to_resume_and_leaves_whole_snapshots(tmp_path):
    from conftest import make_camera_zip
    data = make_camera_zip(tmp_path / 'd.zip', n=8, res=16)
    outdir = tmp_path / 'runs'
    p = _tool('train.py', '--outdir', outdir, '--data', data, '--batch=4', '--gamma=1', '--cbase=256', '--cmax=16',
              '--map-depth=1', '--workers=0', '--snap=1', '--metrics=none', '--tick=0.008', '--kimg=5')
    _wait_for(lambda: any(rundir.newest_snapshot(d) for _i, d in rundir.list_runs(str(outdir))), p)
    os.killpg(p.pid, signal.SIGINT)
    out, _ = p.communicate(timeout=120)
    assert p.returncode == 130, out
    assert out.strip().splitlines()[-1] == ('Training interrupted; resume with --resume=auto (same options) to '
                                            'continue from the newest snapshot.')
    run = rundir.list_runs(str(outdir))[0][1]
    assert not _temporaries(run)
    for snap in rundir.list_snapshots(run):
        with open(snap, 'rb') as f:
            assert 'G_ema' in pickle.load(f)
    stats = os.path.join(run, 'stats.jsonl')   # written after a tick's snapshot: may not exist yet
    for line in (open(stats) if os.path.exists(stats) else []):
        json.loads(line)                       # whole lines only

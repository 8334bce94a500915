"""Faults against every writing tool, as a user meets them; prints the table in docs/reliability.md.

    sudo python tests/fault_matrix.py [TOOL...]   # root: mounts small tmpfs folders under /tmp

For each tool: a full disk (a tmpfs filled to 4 KiB), a read-only folder (a tmpfs remounted
read-only), Ctrl-C (SIGINT to the process group, as a terminal sends it) while it writes, and
SIGKILL while it writes followed by a second run into the same folder. Each row shows the exit
status, the tool's last line and what the folder holds afterwards (`filler` is the file that
fills the disk). Not a test: it asserts nothing and takes a few minutes.
"""

from __future__ import annotations

import glob
import os
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from raycond import atomic_io  # noqa: E402

PY = sys.executable


def mount(size: str) -> str:
    folder = tempfile.mkdtemp(prefix='faults-')
    subprocess.run(['mount', '-t', 'tmpfs', '-o', f'size={size}', 'tmpfs', folder], check=True)
    return folder


def fill(folder: str, leave: int = 4096) -> None:
    st = os.statvfs(folder)
    with open(os.path.join(folder, 'filler'), 'wb') as f:
        f.write(b'\0' * max(0, st.f_bavail * st.f_frsize - leave))


def unmount(folder: str) -> None:
    subprocess.run(['umount', '-l', folder], capture_output=True)
    os.rmdir(folder)


def start(args, cwd):
    return subprocess.Popen([PY, *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, env=dict(os.environ, OMP_NUM_THREADS='1'))


def listing(folder: str) -> str:
    names = []
    for d, _subdirs, files in os.walk(folder):
        for n in files + [s for s in _subdirs if atomic_io.is_temporary_name(s)]:
            rel = os.path.relpath(os.path.join(d, n), folder)
            size = os.path.getsize(os.path.join(d, n)) if os.path.isfile(os.path.join(d, n)) else 0
            names.append(f'{rel} ({size} B)' if n != 'filler' else 'filler')
    return ', '.join(sorted(names)) or '(empty)'


def last_line(out: str) -> str:
    lines = [line.strip() for line in out.replace('\r', '\n').splitlines() if line.strip()]
    return lines[-1] if lines else ''


def run_fault(tool, args, fault, watch=None, rerun=None, delay=0.0):
    """One row: run `args` (paths relative to the folder) under `fault`; returns table cells."""
    size = '64m' if fault in ('sigint', 'sigkill') else '512k'
    folder = mount(size)
    try:
        if fault == 'full':
            fill(folder)
        if fault == 'read-only':
            subprocess.run(['mount', '-o', 'remount,ro', folder], check=True)
        p = start(args, folder)
        note = ''
        if fault in ('sigint', 'sigkill'):
            t0 = time.monotonic()
            while p.poll() is None and not glob.glob(os.path.join(folder, watch)):
                time.sleep(0.005)
            time.sleep(delay)
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGINT if fault == 'sigint' else signal.SIGKILL)
                note = f'signal at {time.monotonic() - t0:.1f} s ({watch} seen{f" + {delay:g} s" if delay else ""}); '
            else:
                note = 'finished before the signal; '
        out, _ = p.communicate(timeout=600)
        lines = len([line for line in out.splitlines() if line.strip() and '%|' not in line])
        cells = [tool, fault, str(p.returncode), last_line(out), f'{note}{lines} line(s) printed', listing(folder)]
        if fault == 'sigkill' and rerun:
            time.sleep(1.0)   # an ffmpeg child finishes its own output file, then ends
            q = start(rerun, folder)
            out2, _ = q.communicate(timeout=600)
            cleaned = [line for line in out2.splitlines() if line.startswith('Removed')]
            said = cleaned[0] if cleaned else 'no cleanup line'
            if q.returncode != 0:
                said += f' ({last_line(out2)})'
            cells.append(f'next run: exit {q.returncode}; {said}; then {listing(folder)}')
        else:
            cells.append('')
        return cells
    finally:
        unmount(folder)


def main():
    net = os.path.join(ROOT, 'checkpoints', 'raycond2-synthheads-64.pkl')
    photo = os.path.join(ROOT, 'docs', 'inversion-views.png')
    gi = [os.path.join(ROOT, 'gen_images.py'), f'--network={net}', '--seeds=0-255', '--outdir=out', '--device=cpu']
    gv = [os.path.join(ROOT, 'gen_video.py'), f'--network={net}', '--seeds=0-8', '--grid=3x3', '--w-frames=120',
          '--device=cpu']
    pj = [os.path.join(ROOT, 'projector.py'), f'--network={net}', f'--target={photo}', '--outdir=out',
          '--num-steps=8', '--tune-steps=4', '--yaw=0', '--pitch=0', '--device=cpu']
    ds = [os.path.join(ROOT, 'dataset_tool.py'), 'synth', '--dest=synth.zip', '--count=1024', '--resolution=32',
          '--workers=2', '--batch=32']
    cases = []
    for fault in ('full', 'read-only'):
        cases += [('gen_images.py', gi, fault, {}), ('gen_video.py (mp4)', gv + ['--output=v.mp4'], fault, {}),
                  ('gen_video.py (gif)', gv + ['--output=v.gif'], fault, {}), ('projector.py', pj, fault, {}),
                  ('dataset_tool.py synth', ds, fault, {})]
    cases += [
        ('gen_video.py (mp4)', gv + ['--output=v.mp4'], 'sigint', dict(watch='.v.mp4.tmp-*')),
        ('gen_video.py (mp4)', gv + ['--output=v.mp4'], 'sigkill',
         dict(watch='.v.mp4.tmp-*', rerun=gv[:3] + ['--w-frames=4', '--device=cpu', '--output=v.mp4'])),
        ('projector.py', pj, 'sigint', dict(watch='out', delay=3.0)),
        ('projector.py', pj, 'sigkill',
         dict(watch='out', delay=3.0, rerun=pj[:3] + ['--outdir=out', '--num-steps=2', '--tune-steps=1', '--device=cpu'])),
        ('dataset_tool.py synth', ds, 'sigint', dict(watch='.synth.zip.tmp-*')),
        ('dataset_tool.py synth', ds, 'sigkill',
         dict(watch='.synth.zip.tmp-*', rerun=ds[:2] + ['--dest=synth.zip', '--count=8', '--resolution=32', '--workers=1'])),
    ]
    only = sys.argv[1:]   # e.g. `projector`: only the rows of tools whose name starts so
    rows = [run_fault(tool, args, fault, **kw) for tool, args, fault, kw in cases
            if not only or any(tool.startswith(o) for o in only)]
    print('| tool | fault | exit | last line | how | left in the folder | after |')
    print('|---|---|---|---|---|---|---|')
    for cells in rows:
        print('| ' + ' | '.join(c.replace('|', '\\|') for c in cells) + ' |')


if __name__ == '__main__':
    main()

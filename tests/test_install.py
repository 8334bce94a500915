"""A non-editable wheel, installed into a fresh virtual environment, gives working console commands
that find the bundled checkpoint (no checkout on the path).

The wheel is built from the working tree's files and installed without dependencies; the new
environment sees the test interpreter's site-packages (torch, click, ...) through a .pth file, so
nothing is downloaded."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMANDS = ("raycond-visualizer", "raycond-gen-images", "raycond-gen-video", "raycond-projector", "raycond-train",
            "raycond-calc-metrics", "raycond-dataset-tool")


def _project_files():
    """The files a clean clone would have: tracked plus untracked-but-not-ignored ones."""
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True,
                         timeout=60)
    if out.returncode != 0:
        pytest.skip("not a git checkout: cannot tell the project's files from build outputs")
    return [f for f in out.stdout.decode().split("\0") if f and os.path.isfile(os.path.join(ROOT, f))]


def _run(args, **kwargs):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["OMP_NUM_THREADS"] = "1"
    r = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300, **kwargs)
    assert r.returncode == 0, f"{args}: {r.stdout[-2000:]}{r.stderr[-2000:]}"
    return r


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(bin directory, scratch directory) of a venv holding the wheel."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    for f in _project_files():
        if f.startswith(("tests/", "benchmarks/", "docs/")):
            continue
        os.makedirs(src / os.path.dirname(f), exist_ok=True)
        shutil.copy2(os.path.join(ROOT, f), src / f)
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp / "dist"),
          str(src)])
    (wheel,) = os.listdir(tmp / "dist")
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    bindir = venv / ("Scripts" if os.name == "nt" else "bin")
    venv_python = str(bindir / ("python.exe" if os.name == "nt" else "python"))
    purelib = _run([venv_python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
    with open(os.path.join(purelib, "host-site-packages.pth"), "w") as f:
        f.write(sysconfig.get_paths()["purelib"] + "\n")
    _run([sys.executable, "-m", "pip", "--python", venv_python, "install", "--no-deps", "--no-index", "-q",
          str(tmp / "dist" / wheel)])
    work = tmp / "work"
    work.mkdir()
    return bindir, work, purelib


@pytest.mark.slow
def test_wheel_installs_every_console_command(installed):
    bindir, _, _ = installed
    missing = [c for c in COMMANDS if not (bindir / c).exists() and not (bindir / f"{c}.exe").exists()]
    assert missing == []


@pytest.mark.slow
def test_installed_gen_images_help_runs(installed):
    bindir, work, _ = installed
    r = _run([str(bindir / "raycond-gen-images"), "--help"], cwd=work)
    assert "--network" in r.stdout and "--seeds" in r.stdout


@pytest.mark.slow
def test_installed_gen_images_uses_the_packaged_checkpoint(installed):
    bindir, work, _ = installed
    r = _run([str(bindir / "raycond-gen-images"), "--seeds=1", "--outdir=out", "--device=cpu"], cwd=work)
    assert "bundled checkpoint" in r.stderr
    assert os.listdir(work / "out") and all(f.endswith(".png") for f in os.listdir(work / "out"))
    # The command said which file it used: the checkpoint installed with the wheel.
    assert os.path.join("site-packages", "raycond", "checkpoints", "raycond2-synthheads-64.pkl") in r.stderr


@pytest.mark.slow
def test_installed_modules_come_from_the_wheel(installed):
    bindir, work, purelib = installed
    code = ("import importlib.util as u; "
            "print(*[u.find_spec(m).origin for m in ('gen_images', 'raycond', 'training', 'viz')], sep=chr(10))")
    origins = _run([str(bindir / "python"), "-c", code], cwd=work).stdout.split()
    assert len(origins) == 4 and all(o.startswith(purelib) for o in origins)


@pytest.mark.slow
def test_installed_projector_help_runs(installed):
    if not os.path.isfile(os.path.join(ROOT, "projector.py")):
        pytest.skip("projector.py is not in this tree yet: raycond-projector has nothing to run")
    bindir, work, _ = installed
    assert "--help" in _run([str(bindir / "raycond-projector"), "--help"], cwd=work).stdout


def test_pyproject_lists_every_package():
    import tomllib
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        listed = set(tomllib.load(f)["tool"]["setuptools"]["packages"])
    found = set()
    for d, dirs, files in os.walk(ROOT):
        if d != ROOT and "__init__.py" not in files:
            dirs[:] = []  # not a package, so nothing below it is importable from the checkout
            continue
        if d != ROOT and not os.path.relpath(d, ROOT).startswith(("tests", "benchmarks")):
            found.add(os.path.relpath(d, ROOT).replace(os.sep, "."))
    assert found <= listed, f"packages missing from pyproject.toml: {sorted(found - listed)}"

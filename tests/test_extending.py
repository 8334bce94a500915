"""docs/extending.md: a network family is one module plus one row of raycond/families.py. This adds
a toy family from a temporary module, touching no file of the project, and trains, loads and
renders it with the project's own tools."""

import os
import subprocess
import sys
import textwrap

from conftest import make_camera_zip

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TOY_MODULE = '''
"""A toy family: the raycond2 networks under another name (what a new family's module looks like)."""
from torch_utils import persistence
from training import networks_raycond2


@persistence.persistent_class
class Generator(networks_raycond2.Generator):
    pass


@persistence.persistent_class
class Discriminator(networks_raycond2.Discriminator):
    pass
'''

SCRIPT = '''
import glob, os, sys
sys.path.insert(0, {module_dir!r})
from raycond import families
families.FAMILIES["toy2"] = families.Family("toy_net.Generator", "toy_net.Discriminator", camera=True,
                                            backbone="stylegan2", defaults=(("embedding", "plucker"),))

import torch
import train
from raycond import camera, generate, loading

assert "toy2" in families.train_configs()   # train.py --cfg and the GUI's training panel offer it
train.main(["--outdir", {outdir!r}, "--data", {data!r}, "--cfg=toy2", "--batch=4", "--gamma=1", "--cbase=256",
            "--cmax=16", "--map-depth=1", "--workers=0", "--metrics=none", "--kimg=0.004", "--tick=0.004"],
           standalone_mode=False)
snapshot = sorted(glob.glob(os.path.join({outdir!r}, "*-toy2-*", "network-snapshot-*.pkl")))[-1]
G = loading.load_network(snapshot)
assert type(G).__module__ == "toy_net" and families.family_of_network(G) == "toy2", type(G)
assert generate.synthesis_takes_c(G)
ws = generate.map_latents(G, torch.randn(2, G.z_dim), camera.camera_label([-20.0, 20.0], [0.0, 0.0]))
img = generate.synthesize(G, ws, camera.camera_label([-20.0, 20.0], [0.0, 0.0]))
assert img.shape == (2, 3, 16, 16) and torch.isfinite(img).all()
print("TOY FAMILY OK", snapshot)
'''


def test_a_family_is_one_module_and_one_table_row(tmp_path):
    module_dir = tmp_path / 'modules'
    module_dir.mkdir()
    (module_dir / 'toy_net.py').write_text(TOY_MODULE)
    data = make_camera_zip(tmp_path / 'd.zip', n=8, res=16)
    script = SCRIPT.format(module_dir=str(module_dir), outdir=str(tmp_path / 'runs'), data=data)
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS='1')
    r = subprocess.run([sys.executable, '-c', textwrap.dedent(script)], cwd=str(tmp_path), env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and 'TOY FAMILY OK' in r.stdout, r.stdout[-3000:] + r.stderr[-3000:]
    assert not list(tmp_path.glob('runs/*raycond2*'))  # it trained as its own family

"""The parameter and buffer names, shapes and constructor arguments of every network class are a
compatibility contract (docs/compatibility.md): pickles and state dicts written by earlier
versions, and by NVIDIA's releases, are rebuilt from them. These tests compare them with the
lists recorded in tests/data (re-record with `python tests/network_configs.py` only for an
intended, documented break)."""

from __future__ import annotations

import inspect
import json
import os

import numpy as np
import pytest

from network_configs import CONFIGS, state_keys

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'data')


def _recorded(name):
    with open(os.path.join(DATA, name)) as f:
        return json.load(f)


@pytest.mark.parametrize('config', sorted(CONFIGS))
def test_state_dict_keys_and_shapes_unchanged(config):
    assert state_keys(config) == _recorded('network_state_keys.json')[config]


def test_every_recorded_config_still_exists():
    assert sorted(_recorded('network_state_keys.json')) == sorted(CONFIGS)


@pytest.mark.parametrize('qualname', sorted(_recorded('network_signatures.json')))
def test_constructor_keeps_its_arguments(qualname):
    import dnnlib
    cls = dnnlib.util.get_obj_by_name(qualname)
    now = [str(p) for p in inspect.signature(cls.__init__).parameters.values()]
    recorded = _recorded('network_signatures.json')[qualname]
    # Every recorded argument keeps its name, default and order; new ones may only be added.
    assert [p for p in now if p in recorded] == recorded


def test_bundled_checkpoint_rebuilt_from_current_classes_renders_identically():
    # The checkpoint runs its own embedded (older) module source; the same constructor arguments
    # and weights in today's classes must give the same image.
    import pickle

    import torch

    import dnnlib
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, 'checkpoints', 'raycond2-synthheads-64.pkl'), 'rb') as f:
        G = pickle.load(f)['G_ema'].eval()
    G2 = dnnlib.util.construct_class_by_name(class_name='training.networks_raycond2.Generator',
                                             *G.init_args, **G.init_kwargs).eval()
    G2.load_state_dict(G.state_dict())
    z = torch.from_numpy(np.random.RandomState(0).randn(1, G.z_dim).astype(np.float32))
    from raycond.camera import camera_label
    c = torch.as_tensor(camera_label(20.0, -5.0), dtype=torch.float32).reshape(1, 25)
    with torch.no_grad():
        a = G(z, c, truncation_psi=0.7, noise_mode='const')
        b = G2(z, c, truncation_psi=0.7, noise_mode='const')
    assert torch.equal(a, b)

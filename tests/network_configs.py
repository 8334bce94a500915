"""Tiny constructor configurations of every network class, shared by the state-dict key test and
the script that records its expected keys (tests/data/network_state_keys.json)."""

from __future__ import annotations

SG2 = dict(z_dim=8, w_dim=8, img_resolution=16, img_channels=3, channel_base=256, channel_max=16,
           mapping_kwargs=dict(num_layers=2))
SG3 = dict(z_dim=8, w_dim=8, img_resolution=16, img_channels=3, channel_base=256, channel_max=16,
           num_layers=4, num_critical=1, margin_size=2, mapping_kwargs=dict(num_layers=2))
D = dict(img_resolution=16, img_channels=3, channel_base=256, channel_max=16)

# name -> (class name, constructor kwargs). Every constructor option that adds, removes or reshapes
# a parameter or buffer has a row.
CONFIGS = {
    'sg2': ('training.networks_stylegan2.Generator', dict(c_dim=0, **SG2)),
    'sg2_cond': ('training.networks_stylegan2.Generator', dict(c_dim=25, **SG2)),
    'sg2_resnet': ('training.networks_stylegan2.Generator', dict(c_dim=0, architecture='resnet', **SG2)),
    'sg3_t': ('training.networks_stylegan3.Generator', dict(c_dim=0, **SG3)),
    'sg3_r': ('training.networks_stylegan3.Generator', dict(c_dim=0, conv_kernel=1, use_radial_filters=True, **SG3)),
    'raycond2': ('training.networks_raycond2.Generator', dict(c_dim=25, **SG2)),
    'raycond2_torgb': ('training.networks_raycond2.Generator', dict(c_dim=25, ray_torgb=True, **SG2)),
    'raycond2_layers': ('training.networks_raycond2.Generator', dict(c_dim=25, ray_layers=[4, 16], **SG2)),
    'posecond2': ('training.networks_raycond2.Generator', dict(c_dim=25, embedding='none', camera_in_mapping=True, **SG2)),
    'uncond2': ('training.networks_raycond2.Generator', dict(c_dim=25, embedding='none', **SG2)),
    'raycond3': ('training.networks_raycond3.Generator', dict(c_dim=25, **SG3)),
    'raycond3_torgb': ('training.networks_raycond3.Generator', dict(c_dim=25, ray_torgb=True, **SG3)),
    'posecond3': ('training.networks_raycond3.Generator', dict(c_dim=25, embedding='none', camera_in_mapping=True, **SG3)),
    'official_raycond2': ('training.networks_official_raycond2.Generator', dict(c_dim=25, **SG2)),
    'official_raycond3_t': ('training.networks_official_raycond3.Generator', dict(c_dim=25, **SG3)),
    'official_raycond3_r': ('training.networks_official_raycond3.Generator',
                            dict(c_dim=25, conv_kernel=1, use_radial_filters=True, **SG3)),
    'D_sg2': ('training.networks_stylegan2.Discriminator', dict(c_dim=0, **D)),
    'D_raycond2': ('training.networks_raycond2.Discriminator', dict(c_dim=25, **D)),
}


def state_keys(name: str) -> dict[str, list[int]]:
    """{state-dict key: shape} of the network built from CONFIGS[name]."""
    import torch

    import dnnlib
    class_name, kwargs = CONFIGS[name]
    torch.manual_seed(0)
    net = dnnlib.util.construct_class_by_name(class_name=class_name, **kwargs)
    return {k: list(v.shape) for k, v in net.state_dict().items()}


if __name__ == '__main__':
    # Re-record only when a change of parameter names is intended (it breaks old pickles' state).
    import json
    import os
    import sys
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'data', 'network_state_keys.json')
    with open(out, 'w') as f:
        json.dump({name: state_keys(name) for name in CONFIGS}, f, indent=0, sort_keys=True)
        f.write('\n')
    print(f'wrote {out}')

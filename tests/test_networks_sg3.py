"""StyleGAN3 (training.networks_stylegan3) and ray-conditioned StyleGAN3 (networks_raycond3)."""

import pickle

import numpy as np
import pytest
import torch

from raycond import camera, loading, rays
from training import networks_raycond3 as r3
from training import networks_stylegan3 as sg3

SMALL = dict(z_dim=16, w_dim=16, img_resolution=16, img_channels=3, channel_base=1024, channel_max=32,
             num_layers=4, num_critical=1, margin_size=2)


def _sg3(**kw):
    torch.manual_seed(0)
    return sg3.Generator(c_dim=0, **{**SMALL, **kw}).eval()


def _rc3(**kw):
    torch.manual_seed(0)
    return r3.Generator(c_dim=25, **{**SMALL, **kw}).eval()


def _cams(yaws=(0.0, 25.0), pitches=(0.0, -10.0)):
    return camera.camera_label(list(yaws), list(pitches))


@pytest.fixture(scope='module')
def G3():
    return _sg3().requires_grad_(False)


@pytest.fixture(scope='module')
def R3():
    return _rc3().requires_grad_(False)


# ---------------------------------------------------------------- StyleGAN3


def test_schedule_matches_stylegan3_t_1024():
    # Layer names and filter parameters of NVIDIA's stylegan3-t 1024x1024 generator.
    s = sg3.layer_schedule(1024, 3)
    names = [f'L{i}_{int(s["sizes"][i])}_{int(s["channels"][i])}' for i in range(15)]
    assert names == ['L0_36_512', 'L1_36_512', 'L2_52_512', 'L3_52_512', 'L4_84_512', 'L5_148_512',
                     'L6_148_512', 'L7_276_323', 'L8_276_203', 'L9_532_128', 'L10_1044_81', 'L11_1044_51',
                     'L12_1044_32', 'L13_1024_32', 'L14_1024_3']
    np.testing.assert_allclose(s['cutoffs'][[1, 2, 10, 12]], [3.1748, 5.03968, 203.187, 512], rtol=1e-5)
    np.testing.assert_allclose(s['half_widths'][[0, 2, 9, 12]], [6, 10.9603, 128, 118.346], rtol=1e-5)
    assert list(s['sampling_rates'][:5]) == [16, 16, 32, 32, 64]


def test_layer_filters_and_padding():
    layer = sg3.SynthesisLayer(w_dim=8, is_torgb=False, is_critically_sampled=False, use_fp16=False,
                               in_channels=4, out_channels=4, in_size=36, out_size=52, in_sampling_rate=16,
                               out_sampling_rate=32, in_cutoff=3.1748, out_cutoff=5.03968, in_half_width=4.8252,
                               out_half_width=10.9603, use_radial_filters=True)
    assert (layer.up_factor, layer.down_factor) == (4, 2)
    assert layer.up_filter.shape == (24,) and layer.down_filter.shape == (12, 12)  # radial: 2-D
    assert abs(float(layer.up_filter.sum()) - 1) < 1e-5 and abs(float(layer.down_filter.sum()) - 1) < 1e-5
    torch.testing.assert_close(layer.down_filter, layer.down_filter.T)
    x = torch.randn(1, 4, 36, 36)
    assert layer(x, torch.randn(1, 8)).shape == (1, 4, 52, 52)


def test_generator_shapes_names_and_attributes(G3):
    assert G3.num_ws == 6 and G3.synthesis.num_ws == 6
    assert G3.synthesis.layer_names == ['L0_20_32', 'L1_20_32', 'L2_20_32', 'L3_16_32', 'L4_16_3']
    keys = set(G3.state_dict())
    for k in ['synthesis.input.weight', 'synthesis.input.affine.weight', 'synthesis.input.affine.bias',
              'synthesis.input.freqs', 'synthesis.input.phases', 'synthesis.input.transform',
              'synthesis.L0_20_32.weight', 'synthesis.L0_20_32.bias', 'synthesis.L0_20_32.magnitude_ema',
              'synthesis.L0_20_32.up_filter', 'synthesis.L0_20_32.down_filter', 'synthesis.L0_20_32.affine.weight',
              'synthesis.L4_16_3.weight', 'mapping.fc0.weight', 'mapping.fc1.bias', 'mapping.w_avg']:
        assert k in keys, k
    assert 'mapping.fc2.weight' not in keys and 'synthesis.L4_16_3.up_filter' not in keys  # ToRGB: no filters
    # SynthesisInput starts as the identity transform: affine weight 0, bias (1, 0, 0, 0).
    assert float(G3.synthesis.input.affine.weight.detach().abs().max()) == 0
    assert G3.synthesis.input.affine.bias.tolist() == [1, 0, 0, 0]
    img = G3(torch.randn(3, 16), None)
    assert img.shape == (3, 3, 16, 16) and img.dtype == torch.float32 and torch.isfinite(img).all()


def test_config_r_uses_1x1_convs_and_radial_filters():
    G = _sg3(conv_kernel=1, use_radial_filters=True)
    L0 = G.synthesis.L0_20_32
    assert L0.weight.shape[-1] == 1 and L0.down_filter.ndim == 2
    assert G.synthesis.L3_16_32.down_filter.ndim == 1  # critically sampled: separable
    assert G(torch.randn(1, 16), None).shape == (1, 3, 16, 16)


def test_deterministic_noise_modes_and_batch(G3):
    ws = G3.mapping(torch.randn(2, 16), None)
    a = G3.synthesis(ws, noise_mode='const')
    torch.testing.assert_close(a, G3.synthesis(ws, noise_mode='random'))
    torch.testing.assert_close(a[1:], G3.synthesis(ws[1:], noise_mode='none'), atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match='noise_mode'):
        G3.synthesis(ws, noise_mode='bogus')


def test_truncation_and_emas():
    G = _sg3()
    z = torch.randn(4, 16)
    G.mapping(z, None, update_emas=True)
    w_avg = G.mapping.w_avg.clone()
    assert float(w_avg.abs().sum()) > 0
    w1 = G.mapping(z, None)
    torch.testing.assert_close(G.mapping(z, None, truncation_psi=0), w_avg.expand_as(w1))
    w_half = G.mapping(z, None, truncation_psi=0.5, truncation_cutoff=2)
    torch.testing.assert_close(w_half[:, :2], (w1[:, :2] + w_avg) / 2)
    torch.testing.assert_close(w_half[:, 2:], w1[:, 2:])
    ema0 = G.synthesis.L0_20_32.magnitude_ema.clone()
    G.synthesis(w1, update_emas=True)
    assert float(G.synthesis.L0_20_32.magnitude_ema) != float(ema0)


def test_input_transform_translates_image(G3):
    ws = G3.mapping(torch.randn(1, 16), None)
    a = G3.synthesis(ws)
    G = pickle.loads(pickle.dumps(G3))
    G.synthesis.input.transform.copy_(torch.tensor([[1, 0, 0.25], [0, 1, 0], [0, 0, 1.]]))
    assert float((G.synthesis(ws) - a).abs().max()) > 1e-3


# ---------------------------------------------------------------- raycond3


def test_margin_rays_match_image_rays():
    c = _cams()
    ext = r3.layer_rays('plucker', c, 20, 16)  # margin of 2 pixels at rate 16
    torch.testing.assert_close(ext[:, :, 2:18, 2:18], rays.plucker_rays(c, 16), atol=1e-5, rtol=1e-5)
    # Margins continue the frustum: direction x keeps growing to the left/right of the image.
    dx = ext[0, 0, 10]
    assert bool((dx[1:] > dx[:-1]).all())


def test_raycond3_shapes_camera_and_broadcast(R3):
    assert R3.embedding == 'plucker' and R3.ray_torgb is False and R3.camera_in_mapping is False
    assert R3.synthesis.L0_20_32.weight.shape[1] == 32 + 6
    assert R3.synthesis.L4_16_3.weight.shape[1] == 32  # ToRGB without rays by default
    ws = R3.mapping(torch.randn(2, 16), None)
    c = _cams()
    a = R3.synthesis(ws, c, noise_mode='const', force_fp32=True)
    b = R3.synthesis(ws, c.flip(0), noise_mode='const', force_fp32=True)
    assert a.shape == (2, 3, 16, 16)
    assert float((a - b).abs().max()) > 1e-3
    one = R3.synthesis(ws, c[:1])
    torch.testing.assert_close(one[0], a[0])
    with pytest.raises(ValueError, match='camera label'):
        R3.synthesis(ws, None)
    with pytest.raises(ValueError, match='shape'):
        R3.synthesis(ws, torch.zeros(2, 16))


def test_none_embedding_ignores_camera_and_posecond():
    G = _rc3(embedding='none')
    ws = G.mapping(torch.randn(2, 16), None)
    torch.testing.assert_close(G.synthesis(ws, _cams()), G.synthesis(ws, None))
    assert G.synthesis.L0_20_32.weight.shape[1] == 32
    P = _rc3(embedding='none', camera_in_mapping=True)
    z = torch.randn(2, 16)
    with torch.no_grad():
        assert float((P.mapping(z, _cams()) - P.mapping(z, _cams().flip(0))).abs().max()) > 1e-4
    with pytest.raises(ValueError, match='c_dim'):
        r3.Generator(c_dim=0, **SMALL)
    with pytest.raises(ValueError, match='embedding'):
        _rc3(embedding='bogus')


def _naive_margin_plucker(c, size, sampling_rate):
    """Plücker rays (N,6,size,size) of a layer grid of `size` pixels at `sampling_rate`, centred on
    the image: grid pixel k sits at image coordinate u = 0.5 + (k + 0.5 - size / 2) / sampling_rate
    (docs/conventions.md); direction normalize(R K^-1 [u, v, 1]), moment o x d."""
    c = np.asarray(c, dtype=np.float64).reshape(-1, 25)
    u = 0.5 + (np.arange(size) + 0.5 - size / 2) / sampling_rate
    uv1 = np.stack(np.broadcast_arrays(u[None, :], u[:, None], 1.0), axis=-1)       # (H,W,3): [u, v, 1]
    out = []
    for label in c:
        pose, K = label[:16].reshape(4, 4), label[16:].reshape(3, 3)
        d = uv1 @ (pose[:3, :3] @ np.linalg.inv(K)).T
        d /= np.linalg.norm(d, axis=-1, keepdims=True)
        m = np.cross(np.broadcast_to(pose[:3, 3], d.shape), d)
        out.append(np.concatenate([d, m], axis=-1).transpose(2, 0, 1))
    return torch.from_numpy(np.stack(out)).float()


def _spy_modulated_conv(monkeypatch):
    """Record, per weight tensor, the input and input gain that sg3.modulated_conv2d receives."""
    seen = {}
    orig = sg3.modulated_conv2d

    def spy(x, w, s, input_gain=None, **kwargs):
        seen[id(w)] = (x.detach().clone(), None if input_gain is None else input_gain.detach().clone())
        return orig(x=x, w=w, s=s, input_gain=input_gain, **kwargs)

    monkeypatch.setattr(sg3, 'modulated_conv2d', spy)
    return seen


def test_every_layer_convolves_features_and_margin_rays(monkeypatch):
    G = _rc3(ray_torgb=True)
    c = _cams()
    seen = _spy_modulated_conv(monkeypatch)
    G(torch.randn(2, 16), c)
    layers = [getattr(G.synthesis, n) for n in G.synthesis.layer_names]
    assert all(isinstance(layer, r3.RaySynthesisLayer) for layer in layers)  # ToRGB included
    for layer in layers:
        x, gain = seen[id(layer.weight)]
        size = int(layer.in_size[0])
        assert x.shape == (2, layer.feature_channels + 6, size, size)
        assert layer.weight.shape[1] == x.shape[1]
        torch.testing.assert_close(x[:, -6:], _naive_margin_plucker(c, size, layer.in_sampling_rate),
                                   atol=1e-5, rtol=1e-5)
        assert torch.equal(gain[-6:], torch.ones(6))  # rays keep their scale


def test_torgb_without_ray_torgb_sees_features_only(monkeypatch):
    G = _rc3()
    seen = _spy_modulated_conv(monkeypatch)
    G(torch.randn(2, 16), _cams())
    torgb = getattr(G.synthesis, G.synthesis.layer_names[-1])
    assert not isinstance(torgb, r3.RaySynthesisLayer)
    assert seen[id(torgb.weight)][0].shape[1] == torgb.in_channels


def test_ray_weight_columns_receive_gradient_sg3():
    G = _rc3().train()
    G(torch.randn(2, 16), _cams()).square().sum().backward()
    layer = G.synthesis.L1_20_32
    assert float(layer.weight.grad[:, 32:].abs().sum()) > 0


def test_raycond3_refuses_ray_layers():
    with pytest.raises(ValueError, match='ray_layers'):
        _rc3(ray_layers=[8])


def test_magnitude_ema_tracks_features_only():
    G = _rc3()
    layer = G.synthesis.L1_20_32
    x = torch.full([2, 32, 20, 20], 3.0)
    layer._update_magnitude(torch.cat([x, torch.zeros(2, 6, 20, 20)], dim=1))
    expected = torch.tensor(9.0).lerp(torch.tensor(1.0), layer.magnitude_ema_beta)
    torch.testing.assert_close(layer.magnitude_ema, expected)
    gain = layer._input_gain()
    assert gain.shape == (38,) and float(gain[-1]) == 1 and abs(float(gain[0]) - float(expected.rsqrt())) < 1e-6


def test_pickle_round_trip_and_network_info(R3, tmp_path):
    path = tmp_path / 'rc3.pkl'
    with open(path, 'wb') as f:
        pickle.dump({'G_ema': R3}, f)
    G, info = loading.load_network_and_info(str(path))
    assert info.kind == 'raycond3' and info.camera and info.synthesis_takes_c and info.num_ws == 6
    ws = R3.mapping(torch.randn(2, 16), None)
    torch.testing.assert_close(G.synthesis(ws, _cams()), R3.synthesis(ws, _cams()))


# ---------------------------------------------------------------- train.py configs


def _tiny_camera_dataset(path, n=4, res=16):
    import io
    import json
    import zipfile

    import PIL.Image
    c = _cams(np.linspace(-20, 20, n), np.zeros(n)).tolist()
    with zipfile.ZipFile(path, 'w') as z:
        for i in range(n):
            buf = io.BytesIO()
            PIL.Image.fromarray(np.full([res, res, 3], 40 * i, dtype=np.uint8)).save(buf, format='png')
            z.writestr(f'{i}.png', buf.getvalue())
        z.writestr('dataset.json', json.dumps({'labels': [[f'{i}.png', c[i]] for i in range(n)]}))
    return str(path)


@pytest.mark.parametrize('cfg', ['raycond3-t', 'stylegan3-r'])
def test_train_dry_run_stylegan3_configs(cfg, tmp_path):
    import json

    import dnnlib
    from click.testing import CliRunner
    from train import main
    data = _tiny_camera_dataset(tmp_path / 'data.zip')
    result = CliRunner().invoke(main, ['--outdir', str(tmp_path / 'runs'), '--data', data, f'--cfg={cfg}',
                                       '--batch=4', '--gamma=1', '--cbase=1024', '--cmax=32', '--workers=0',
                                       '--metrics=none', '--dry-run'])
    assert result.exit_code == 0, result.output
    opts = json.loads(result.output[result.output.index('{'):result.output.rindex('}') + 1])
    G_kwargs = opts['G_kwargs']
    assert G_kwargs['mapping_kwargs']['num_layers'] == 2 and opts['loss_kwargs']['pl_weight'] == 0
    assert 0 < G_kwargs['magnitude_ema_beta'] < 1
    if cfg == 'raycond3-t':
        assert G_kwargs['class_name'] == 'training.networks_raycond3.Generator'
        assert opts['D_kwargs']['class_name'] == 'training.networks_raycond2.Discriminator'
        assert G_kwargs['embedding'] == 'plucker' and 'conv_kernel' not in G_kwargs
    else:
        assert G_kwargs['class_name'] == 'training.networks_stylegan3.Generator'
        assert G_kwargs['conv_kernel'] == 1 and G_kwargs['use_radial_filters'] is True
        assert (G_kwargs['channel_base'], G_kwargs['channel_max']) == (2048, 64)
    # The printed kwargs build a working generator (small resolution and layer count for speed).
    kw = {k: v for k, v in G_kwargs.items() if k != 'class_name'}
    kw.update(z_dim=8, w_dim=8, num_layers=3, num_critical=1, margin_size=2)
    G = dnnlib.util.construct_class_by_name(class_name=G_kwargs['class_name'], c_dim=25, img_resolution=16,
                                            img_channels=3, **kw)
    assert G(torch.randn(1, 8), _cams()[:1]).shape == (1, 3, 16, 16)
    assert not (tmp_path / 'runs').exists()

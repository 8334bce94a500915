"""Tests for training.networks_stylegan2 and training.networks_raycond2 (tiny CPU networks)."""

import copy
import pickle

import numpy as np
import pytest
import torch

from raycond import rays as raycond_rays
from raycond.camera import camera_label
from training import networks_raycond2 as rc2
from training import networks_stylegan2 as sg2

RES = 32
SMALL = dict(z_dim=32, w_dim=32, img_resolution=RES, img_channels=3, channel_base=1024, channel_max=32,
             mapping_kwargs=dict(num_layers=2))


def cam(yaw_deg, pitch_deg=0.0, n=1):
    return torch.as_tensor(camera_label(yaw_deg, pitch_deg), dtype=torch.float32).reshape(1, 25).repeat(n, 1)


def z_for(seed, n=1, dim=32):
    return torch.from_numpy(np.random.RandomState(seed).randn(n, dim).astype(np.float32))


def with_noise(G, strength=0.5):
    for name, p in G.named_parameters():
        if name.endswith('noise_strength'):
            with torch.no_grad():
                p.fill_(strength)
    return G


def make_sg2(**kw):
    torch.manual_seed(0)
    return sg2.Generator(c_dim=0, **{**SMALL, **kw}).eval()


def make_rc2(**kw):
    torch.manual_seed(0)
    return rc2.Generator(c_dim=25, **{**SMALL, **kw}).eval()


def make_d(cls=sg2.Discriminator, c_dim=25, **kw):
    torch.manual_seed(1)
    return cls(c_dim=c_dim, img_resolution=RES, img_channels=3, channel_base=1024, channel_max=32, **kw)


@pytest.fixture(scope='module')
def G_rc():
    return with_noise(make_rc2())


# ---------------------------------------------------------------------------- shapes / attributes


def test_generator_shapes_and_attributes(G_rc):
    G = make_sg2()
    img = G(z_for(0, 2), None, noise_mode='const')
    assert img.shape == (2, 3, RES, RES) and img.dtype == torch.float32
    assert (G.z_dim, G.c_dim, G.w_dim, G.img_resolution, G.img_channels) == (32, 0, 32, RES, 3)
    # blocks 4..32: 1 + 2*3 convs + final torgb
    assert G.num_ws == 8 and G_rc.num_ws == 8
    img = G_rc(z_for(0, 2), cam(10, n=2), noise_mode='const')
    assert img.shape == (2, 3, RES, RES)
    assert (G_rc.c_dim, G_rc.embedding, G_rc.ray_torgb, G_rc.camera_in_mapping) == (25, 'plucker', False, False)
    assert G_rc.mapping.c_dim == 0
    ws = G_rc.mapping(z_for(0, 2), cam(10, n=2))
    assert ws.shape == (2, G_rc.num_ws, 32)


def test_discriminator_shapes():
    D = make_d(c_dim=0)
    assert D(torch.randn(3, 3, RES, RES), None).shape == (3, 1)
    D = make_d(rc2.Discriminator)
    assert D.c_dim == 25
    assert D(torch.randn(3, 3, RES, RES), cam(0, n=3)).shape == (3, 1)


def test_state_dict_names_match_stylegan2_ada():
    G = make_sg2()
    keys = set(G.state_dict())
    for k in ['mapping.fc0.weight', 'mapping.fc0.bias', 'mapping.fc1.weight', 'mapping.w_avg',
              'synthesis.b4.const', 'synthesis.b4.resample_filter', 'synthesis.b4.conv1.weight',
              'synthesis.b4.conv1.bias', 'synthesis.b4.conv1.affine.weight', 'synthesis.b4.conv1.affine.bias',
              'synthesis.b4.conv1.noise_const', 'synthesis.b4.conv1.noise_strength',
              'synthesis.b4.conv1.resample_filter', 'synthesis.b8.conv0.weight', 'synthesis.b8.torgb.weight',
              'synthesis.b8.torgb.bias', 'synthesis.b8.torgb.affine.weight', 'synthesis.b32.torgb.weight']:
        assert k in keys, k
    D = make_d()
    dkeys = set(D.state_dict())
    for k in ['b32.fromrgb.weight', 'b32.fromrgb.bias', 'b32.conv0.weight', 'b32.conv1.weight', 'b32.skip.weight',
              'b32.resample_filter', 'b8.conv1.bias', 'b4.conv.weight', 'b4.fc.weight', 'b4.out.weight',
              'b4.out.bias', 'mapping.embed.weight', 'mapping.fc0.weight']:
        assert k in dkeys, k
    assert 'b16.fromrgb.weight' not in dkeys  # resnet D: fromrgb only at the top
    # The ray-conditioned G keeps the same names; only the conv weights gain 6 input channels.
    Gr = make_rc2()
    assert set(Gr.state_dict()) == keys
    assert Gr.synthesis.b8.conv0.weight.shape[1] == G.synthesis.b8.conv0.weight.shape[1] + 6
    assert Gr.synthesis.b8.conv0.affine.weight.shape[0] == G.synthesis.b8.conv0.in_channels + 6
    assert Gr.synthesis.b8.torgb.weight.shape == G.synthesis.b8.torgb.weight.shape


def test_unconditional_raycond_loads_stylegan2_state_dict():
    G = make_sg2()
    torch.manual_seed(5)
    Gn = rc2.Generator(c_dim=25, embedding='none', **SMALL).eval()
    Gn.load_state_dict(G.state_dict())
    z = z_for(3, 2)
    a = G(z, None, noise_mode='const')
    b = Gn(z, cam(30, n=2), noise_mode='const')
    torch.testing.assert_close(a, b)


# ---------------------------------------------------------------------------- conditioning


def test_camera_changes_raycond_image_only(G_rc):
    z = z_for(1)
    a = G_rc(z, cam(-25), noise_mode='const')
    b = G_rc(z, cam(25), noise_mode='const')
    assert (a - b).abs().mean() > 1e-3
    G = with_noise(make_sg2())
    torch.testing.assert_close(G(z, cam(-25), noise_mode='const'), G(z, cam(25), noise_mode='const'))
    Gn = with_noise(make_rc2(embedding='none'))
    torch.testing.assert_close(Gn(z, cam(-25), noise_mode='const'), Gn(z, cam(25), noise_mode='const'))
    assert Gn(z, None, noise_mode='const').shape == (1, 3, RES, RES)  # c unused


def test_pose_conditioned_baseline():
    G = make_rc2(embedding='none', camera_in_mapping=True)
    assert G.mapping.c_dim == 25 and 'mapping.embed.weight' in G.state_dict()
    z = z_for(2)
    wa, wb = G.mapping(z, cam(-20)), G.mapping(z, cam(20))
    assert (wa - wb).abs().max() > 1e-4
    ws = G.mapping(z, cam(-20))
    torch.testing.assert_close(G.synthesis(ws, cam(-20), noise_mode='const'),
                               G.synthesis(ws, cam(20), noise_mode='const'))  # synthesis ignores c


def test_rays_reach_every_conv_layer(monkeypatch):
    G = make_rc2(ray_torgb=True)
    c = cam(15, 5)
    seen = {}
    orig = sg2.modulated_conv2d

    def spy(x, weight, *args, **kwargs):
        seen[id(weight)] = x.detach().clone()
        return orig(x, weight, *args, **kwargs)

    monkeypatch.setattr(sg2, 'modulated_conv2d', spy)
    G.synthesis(G.mapping(z_for(0), c), c, noise_mode='const')
    layers = [m for m in G.synthesis.modules() if isinstance(m, (rc2.RaySynthesisLayer, rc2.RayToRGBLayer))]
    assert len(layers) == 1 + 2 * 3 + 4  # all convs and all ToRGBs
    for layer in layers:
        x = seen[id(layer.weight)]
        res = x.shape[-1]
        expected_res = layer.resolution // layer.up if isinstance(layer, rc2.RaySynthesisLayer) else res
        assert res == expected_res
        assert x.shape[1] == layer.feature_channels + 6 == layer.weight.shape[1]
        torch.testing.assert_close(x[:, -6:], raycond_rays.ray_embedding('plucker', c, res))


def test_ray_weight_columns_receive_gradient():
    G = make_rc2().train()
    c = cam(10)
    img = G(z_for(0), c, noise_mode='const')
    img.square().sum().backward()
    convs = [m for m in G.synthesis.modules() if isinstance(m, rc2.RaySynthesisLayer)]
    assert len(convs) == 7
    for m in convs:
        assert m.weight.grad[:, -6:].abs().sum() > 0
    torgbs = [m for m in G.synthesis.modules() if isinstance(m, sg2.ToRGBLayer)]
    assert all(not isinstance(m, rc2.RayToRGBLayer) for m in torgbs)  # ray_torgb=False by default


def test_other_embeddings_run():
    for kind in ['origin_dir', 'two_plane']:
        G = make_rc2(embedding=kind)
        assert G(z_for(0), cam(5), noise_mode='const').shape == (1, 3, RES, RES)
    with pytest.raises(ValueError, match='embedding'):
        make_rc2(embedding='bogus')


# ---------------------------------------------------------------------------- noise, truncation, emas


def test_noise_modes(G_rc):
    z, c = z_for(4), cam(0)
    ws = G_rc.mapping(z, c)
    a = G_rc.synthesis(ws, c, noise_mode='const')
    torch.testing.assert_close(a, G_rc.synthesis(ws, c, noise_mode='const'), rtol=0, atol=0)
    r1 = G_rc.synthesis(ws, c, noise_mode='random')
    r2 = G_rc.synthesis(ws, c, noise_mode='random')
    assert (r1 - r2).abs().max() > 1e-3
    n = G_rc.synthesis(ws, c, noise_mode='none')
    assert (n - a).abs().max() > 1e-4
    with pytest.raises(ValueError, match='noise_mode'):
        G_rc.synthesis(ws, c, noise_mode='bogus')


def test_truncation_and_w_avg():
    G = make_rc2()
    with torch.no_grad():
        G.mapping.w_avg.copy_(torch.randn(32))
    c = cam(0, n=2)
    ws = G.mapping(z_for(7, 2), c, truncation_psi=0)
    torch.testing.assert_close(ws, G.mapping.w_avg.expand_as(ws))
    img = G(z_for(7, 2), c, truncation_psi=0, noise_mode='const')
    torch.testing.assert_close(img[0], img[1])
    # truncation_cutoff only touches the first layers
    full = G.mapping(z_for(7, 2), c)
    cut = G.mapping(z_for(7, 2), c, truncation_psi=0.5, truncation_cutoff=3)
    torch.testing.assert_close(cut[:, 3:], full[:, 3:])
    torch.testing.assert_close(cut[:, :3], G.mapping.w_avg.lerp(full[:, :3], 0.5))

    before = G.mapping.w_avg.clone()
    G.mapping(z_for(8, 4), cam(0, n=4))
    torch.testing.assert_close(G.mapping.w_avg, before)  # no update without update_emas
    w = G.mapping(z_for(8, 4), cam(0, n=4), update_emas=True)[:, 0]
    beta = G.mapping.w_avg_beta
    torch.testing.assert_close(G.mapping.w_avg, beta * before + (1 - beta) * w.mean(0))


# ---------------------------------------------------------------------------- numerics / speed paths


def test_modulated_conv2d_matches_direct_formula():
    torch.manual_seed(0)
    x, weight, styles = torch.randn(3, 5, 8, 8), torch.randn(4, 5, 3, 3), torch.randn(3, 5)
    outs = []
    for n in range(3):
        w = weight * styles[n].reshape(1, -1, 1, 1)
        w = w / w.square().sum(dim=[1, 2, 3], keepdim=True).add(1e-8).sqrt()
        outs.append(torch.nn.functional.conv2d(x[n:n + 1], w, padding=1))
    ref = torch.cat(outs)
    for fused in [True, False]:
        got = sg2.modulated_conv2d(x, weight, styles, padding=1, fused_modconv=fused)
        torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)


def test_batch_matches_single_and_memory_formats(G_rc, monkeypatch):
    z, c = z_for(9, 3), torch.cat([cam(-20), cam(0), cam(20)])
    ws = G_rc.mapping(z, c)
    batch = G_rc.synthesis(ws, c, noise_mode='const')
    single = torch.cat([G_rc.synthesis(ws[i:i + 1], c[i:i + 1], noise_mode='const') for i in range(3)])
    torch.testing.assert_close(batch, single, rtol=1e-4, atol=1e-4)
    fused = G_rc.synthesis(ws, c, noise_mode='const', fused_modconv=True)
    torch.testing.assert_close(fused, single, rtol=1e-4, atol=1e-4)
    monkeypatch.setattr(sg2, 'CPU_CHANNELS_LAST', False)
    torch.testing.assert_close(G_rc.synthesis(ws, c, noise_mode='const'), batch, rtol=1e-4, atol=1e-4)
    # a single camera broadcasts over the batch
    torch.testing.assert_close(G_rc.synthesis(ws, c[:1], noise_mode='const'),
                               G_rc.synthesis(ws, c[:1].repeat(3, 1), noise_mode='const'))


def test_fp16_layers_off_on_cpu():
    G = make_rc2(num_fp16_res=4)
    D = make_d(rc2.Discriminator, num_fp16_res=4)
    assert any(getattr(G.synthesis, f'b{r}').use_fp16 for r in G.synthesis.block_resolutions)
    dtypes = []
    hooks = [m.register_forward_hook(lambda m, i, o: dtypes.extend(t.dtype for t in (o if isinstance(o, tuple) else (o,))
                                                                     if torch.is_tensor(t)))
             for m in list(G.modules()) + list(D.modules())]
    c = cam(0, n=2)
    img = G(z_for(0, 2), c, noise_mode='const')  # force_fp32 defaults to False
    D(img, c)
    for h in hooks:
        h.remove()
    assert dtypes and all(dt == torch.float32 for dt in dtypes)
    assert all(p.dtype == torch.float32 for p in G.parameters())


def test_pickle_round_trip(G_rc):
    G2 = pickle.loads(pickle.dumps(G_rc))
    z, c = z_for(11), cam(12)
    torch.testing.assert_close(G2(z, c, noise_mode='const'), G_rc(z, c, noise_mode='const'))
    assert G2.embedding == 'plucker' and G2.num_ws == G_rc.num_ws
    G3 = copy.deepcopy(G_rc)
    torch.testing.assert_close(G3(z, c, noise_mode='const'), G_rc(z, c, noise_mode='const'))


# ---------------------------------------------------------------------------- discriminator


def test_discriminator_uses_camera_and_double_backward():
    D = make_d(rc2.Discriminator)
    img = torch.randn(2, 3, RES, RES)
    a, b = D(img, cam(-30, n=2)), D(img, cam(30, n=2))
    assert (a - b).abs().max() > 1e-5
    # R1 penalty: gradient of the logits w.r.t. the images, then backward through it.
    img = img.detach().requires_grad_(True)
    logits = D(img, cam(10, n=2))
    (r1_grads,) = torch.autograd.grad(outputs=[logits.sum()], inputs=[img], create_graph=True)
    penalty = r1_grads.square().sum(dim=[1, 2, 3]).mean()
    penalty.backward()
    grads = [p.grad for p in D.parameters() if p.grad is not None]
    assert len(grads) > 10
    assert all(torch.isfinite(g).all() for g in grads)
    assert sum(g.abs().sum() for g in grads) > 0


# ---------------------------------------------------------------------------- bad input


def test_bad_camera_inputs(G_rc):
    ws = G_rc.mapping(z_for(0, 2), None)
    with pytest.raises(ValueError, match=r'G\.synthesis.*\[2, 25\]'):
        G_rc.synthesis(ws, torch.zeros(2, 16))
    with pytest.raises(ValueError, match=r'G\.synthesis.*required'):
        G_rc.synthesis(ws, None)
    with pytest.raises(ValueError, match=r'G\.synthesis'):
        G_rc.synthesis(ws, cam(0, n=3))
    c = cam(0, n=2)
    c[0, 3] = float('nan')
    with pytest.raises(ValueError, match='non-finite'):
        G_rc.synthesis(ws, c)
    D = make_d(rc2.Discriminator)
    with pytest.raises(ValueError, match=r'D: camera label c must have shape \[2, 25\]'):
        D(torch.randn(2, 3, RES, RES), torch.zeros(2, 24))
    Gp = make_rc2(embedding='none', camera_in_mapping=True)
    with pytest.raises(ValueError, match=r'G\.mapping'):
        Gp.mapping(z_for(0, 2), torch.zeros(2, 5))
    with pytest.raises(ValueError, match='c_dim'):
        rc2.Generator(c_dim=0, **SMALL)


def test_inference_weight_cache_follows_weight_updates():
    G = make_rc2()
    z, c = z_for(12), cam(8)
    ws = G.mapping(z, c).detach()
    with torch.no_grad():
        a = G.synthesis(ws, c, noise_mode='const')       # fills the inference caches
    torch.testing.assert_close(a, G.synthesis(ws, c, noise_mode='const').detach(), rtol=1e-5, atol=1e-5)
    other = make_rc2()
    torch.manual_seed(3)
    for p in other.parameters():
        p.data.normal_()
    G.load_state_dict(other.state_dict())                # in-place copies bump the weight versions
    with torch.no_grad():
        b = G.synthesis(ws, c, noise_mode='const')
    torch.testing.assert_close(b, other.synthesis(ws, c, noise_mode='const').detach(), rtol=1e-5, atol=1e-5)
    assert (a - b).abs().max() > 1e-3


def test_fused_adam_updates_need_drop_inference_caches():
    """torch's fused Adam leaves the weights' version counters as they were, so the inference
    cache cannot see its updates: misc.drop_inference_caches (what pivotal tuning calls) makes
    the next render use the new weights."""
    from torch_utils import misc
    G = make_rc2()
    z, c = z_for(5), cam(10)
    ws = G.mapping(z, c).detach()
    with torch.no_grad():
        before = G.synthesis(ws, c, noise_mode='const')   # fills the inference caches
    params = list(G.synthesis.parameters())
    for p in params:
        p.grad = torch.ones_like(p)
    torch.optim.Adam(params, lr=0.05, fused=True).step()
    with torch.no_grad():
        stale = G.synthesis(ws, c, noise_mode='const')
        misc.drop_inference_caches(G)
        fresh = G.synthesis(ws, c, noise_mode='const')
    fresh_with_grad = G.synthesis(ws, c, noise_mode='const').detach()   # no cache when gradients are on
    assert (stale - fresh_with_grad).abs().max() > 1e-3   # the hazard: the cache kept the old conv weights
    torch.testing.assert_close(fresh, fresh_with_grad, rtol=1e-5, atol=1e-5)
    assert (fresh - before).abs().max() > 1e-2


@pytest.mark.parametrize('arch', ['orig', 'skip', 'resnet'])
def test_architectures(arch):
    G = make_rc2(architecture=arch)
    keys = set(G.state_dict())
    assert ('synthesis.b16.torgb.weight' in keys) == (arch == 'skip')
    assert ('synthesis.b16.skip.weight' in keys) == (arch == 'resnet')
    assert 'synthesis.b32.torgb.weight' in keys  # the last block always has ToRGB
    c = cam(0, n=2)
    img = G(z_for(0, 2), c, noise_mode='const')
    assert img.shape == (2, 3, RES, RES) and torch.isfinite(img).all()
    D = make_d(rc2.Discriminator, architecture=arch)
    assert ('b16.fromrgb.weight' in D.state_dict()) == (arch == 'skip')
    assert D(img, c).shape == (2, 1)


def test_ray_layers_subset():
    """ray_layers=[4, 16]: only those blocks see rays; the others are plain StyleGAN2 blocks."""
    G = make_rc2(ray_layers=[4, 16])
    assert isinstance(G.synthesis.b4, rc2.RaySynthesisBlock) and isinstance(G.synthesis.b16, rc2.RaySynthesisBlock)
    assert not isinstance(G.synthesis.b8, rc2.RaySynthesisBlock) and not isinstance(G.synthesis.b32, rc2.RaySynthesisBlock)
    assert G.synthesis.b8.conv0.weight.shape[1] == G.synthesis.b4.conv1.weight.shape[0]          # no +6
    assert G.synthesis.b16.conv0.weight.shape[1] == G.synthesis.b8.conv1.weight.shape[0] + 6
    with torch.no_grad():
        ws = G.mapping(z_for(3), None)
        a = G.synthesis(ws, cam(-30), noise_mode='const')
        b = G.synthesis(ws, cam(30), noise_mode='const')
    assert (a - b).abs().mean() > 1e-3
    with pytest.raises(ValueError, match='block resolutions'):
        make_rc2(ray_layers=[4, 12])

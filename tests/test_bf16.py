"""bfloat16 layers on the CPU (raycond.precision): the rule, fidelity to float32, and that turning it
off, or a CPU without native bf16, changes nothing. RAYCOND_CPU_BF16 forces the CPU answer, so these
run (emulated, slower) on any CPU."""

from __future__ import annotations

import math
import types

import numpy as np
import pytest
import torch

from raycond import generate as gen
from raycond import loading, precision
from raycond.camera import camera_label
from training import networks_raycond2, networks_stylegan2 as sg2

PSNR_BOUND = 35.0   # dB, image against the float32 render (issue 26)


@pytest.fixture
def bf16_on(monkeypatch):
    monkeypatch.setenv(precision.ENV, '1')


@pytest.fixture
def bf16_off(monkeypatch):
    monkeypatch.setenv(precision.ENV, '0')


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of two renders after the 8-bit conversion every tool applies."""
    a, b = (gen.to_uint8(x).float() for x in (a, b))
    mse = float(((a - b) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(255 ** 2 / mse)


def dtypes_of_blocks(G, run):
    """The dtypes of every synthesis block's feature output during run()."""
    seen = []
    hooks = [b.register_forward_hook(lambda m, i, o: seen.append(o[0].dtype)) for b in G.synthesis.children()
             if isinstance(b, sg2.SynthesisBlock)]
    try:
        run()
    finally:
        for h in hooks:
            h.remove()
    return seen


def cameras(n):
    return torch.as_tensor(camera_label(np.linspace(-25, 25, n), np.linspace(-8, 8, n)), dtype=torch.float32)


def render(G, seeds, c, fp32):
    z = gen.seeds_to_z(seeds, G.z_dim, 'cpu')
    with torch.inference_mode():
        ws = G.mapping(z, c, truncation_psi=0.7)
        return G.synthesis(ws, c, noise_mode='const', force_fp32=fp32)


def random_256(num_fp16_res=4):
    torch.manual_seed(0)
    G = networks_raycond2.Generator(z_dim=64, c_dim=25, w_dim=64, img_resolution=256, img_channels=3,
                                    channel_base=4096, channel_max=64, num_fp16_res=num_fp16_res, conv_clamp=256,
                                    mapping_kwargs=dict(num_layers=2))
    return G.eval().requires_grad_(False)


# ----------------------------------------------------------------------------- the rule

def test_layer_dtype_per_device(bf16_on):
    assert precision.layer_dtype('cuda') == torch.float16
    assert precision.layer_dtype('cpu') == torch.bfloat16
    assert precision.layer_dtype('mps') == torch.float32
    assert precision.layer_dtype('cpu', fp32=True) == torch.float32
    assert precision.describe('cpu') == 'bf16 layers' and precision.describe('cuda:0') == 'fp16 layers'


def test_cpu_without_native_bf16_stays_float32(bf16_off):
    assert precision.half_dtype('cpu') is None
    assert precision.layer_dtype('cpu') == torch.float32
    assert precision.describe('cpu') == 'fp32'
    assert sg2.block_format(True, False, False, torch.device('cpu'))[0] == torch.float32


def test_bad_environment_value_names_the_variable(monkeypatch):
    monkeypatch.setenv(precision.ENV, 'yes')
    with pytest.raises(ValueError, match='RAYCOND_CPU_BF16 must be 0 or 1'):
        precision.cpu_bf16()


def test_native_bf16_read_from_cpu_flags(tmp_path):
    info = tmp_path / 'cpuinfo'
    info.write_text('processor\t: 0\nflags\t\t: fpu sse2 avx512f avx512_bf16 avx512_vnni\n\nprocessor\t: 1\n')
    assert {'avx512f', 'avx512_bf16'} <= precision.cpu_flags(str(info))
    assert precision.cpu_flags(str(tmp_path / 'missing')) == frozenset()


def test_force_fp32_only_for_code_that_knows_the_rule(bf16_on, small_generator):
    assert gen.force_fp32_for('cpu', False, small_generator) is False
    assert gen.force_fp32_for('cpu', True, small_generator) is True
    assert gen.force_fp32_for('cpu', False) is True            # without the network: float32
    assert gen.force_fp32_for('cuda', False) is False
    # A class from a module that does not declare the rule (another release's pickled code) would run
    # float16 on the CPU if force_fp32 were off.
    foreign = types.ModuleType('foreign_release_networks')
    cls = type('Generator', (torch.nn.Module,), {'__module__': foreign.__name__})
    import sys
    sys.modules[foreign.__name__] = foreign
    try:
        assert not precision.follows_rule(cls())
        assert gen.force_fp32_for('cpu', False, cls()) is True
    finally:
        del sys.modules[foreign.__name__]


def test_official_release_rebuild_keeps_float32():
    from training import networks_official_raycond2
    G = networks_official_raycond2.Generator(z_dim=8, c_dim=25, w_dim=8, img_resolution=16, img_channels=3,
                                             channel_base=64, channel_max=8)
    assert not precision.follows_rule(G)


# ----------------------------------------------------------------------------- fidelity

def test_random_256_network_bf16_render_is_faithful(bf16_on):
    G = random_256()
    c = cameras(2)
    ref = render(G, [0, 1], c, fp32=True)
    seen = dtypes_of_blocks(G, lambda: render(G, [0, 1], c, fp32=False))
    assert set(seen) == {torch.bfloat16}                        # inference: every block of such a network
    with torch.enable_grad():                                   # with gradients: the marked blocks only
        ws = G.mapping(torch.randn([1, G.z_dim]), c[:1]).detach().requires_grad_(True)
        marked = dtypes_of_blocks(G, lambda: gen.synthesize(G, ws, c[:1], force_fp32=False))
    assert marked == [torch.float32] * 3 + [torch.bfloat16] * 4  # 4², 8², 16² float32 (num_fp16_res=4)
    img = render(G, [0, 1], c, fp32=False)
    assert img.dtype == torch.float32
    assert PSNR_BOUND <= psnr(img, ref) < math.inf


@pytest.fixture(scope='module')
def bundled():
    return loading.load_network(loading.DEFAULT_CHECKPOINT)


def test_bundled_network_as_shipped_has_no_bf16_layers(bf16_on, bundled):
    """Trained on the CPU in float32 (num_fp16_res=0): nothing switches, the render is bit-identical."""
    c = cameras(3)
    assert torch.equal(render(bundled, [0, 1, 2], c, fp32=False), render(bundled, [0, 1, 2], c, fp32=True))


def test_bundled_weights_in_bf16_layers_are_faithful(bf16_on, bundled):
    """The bundled weights with the 4 highest resolutions marked as fp16 layers (what num_fp16_res=4
    makes): the bf16 render stays within the bound of the float32 one."""
    import copy
    G = copy.deepcopy(bundled)
    for res in G.synthesis.block_resolutions[-4:]:
        getattr(G.synthesis, f'b{res}').use_fp16 = True
    c = cameras(4)
    seeds = [0, 1, 2, 3]
    assert torch.bfloat16 in dtypes_of_blocks(G, lambda: render(G, seeds, c, fp32=False))
    assert PSNR_BOUND <= psnr(render(G, seeds, c, fp32=False), render(G, seeds, c, fp32=True)) < math.inf


def test_raycond3_bf16_render_is_faithful(bf16_on, tiny_generator):
    G = tiny_generator('raycond3', 32, num_fp16_res=4)
    c = cameras(2)
    assert PSNR_BOUND <= psnr(render(G, [0, 1], c, fp32=False), render(G, [0, 1], c, fp32=True)) < math.inf


def test_bf16_off_is_the_float32_path(bf16_off):
    G = random_256()
    c = cameras(2)
    seen = dtypes_of_blocks(G, lambda: render(G, [0, 1], c, fp32=False))
    assert set(seen) == {torch.float32}
    assert torch.equal(render(G, [0, 1], c, fp32=False), render(G, [0, 1], c, fp32=True))


def test_autocast_around_the_generator_runs(bf16_off, tiny_generator):
    for kind in ('raycond2', 'raycond3'):
        G = tiny_generator(kind, 32, num_fp16_res=4)
        c = cameras(2)
        ref = render(G, [0, 1], c, fp32=True)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            img = render(G, [0, 1], c, fp32=True)
        assert img.shape == ref.shape and psnr(img.float(), ref) >= 30.0


# ----------------------------------------------------------------------------- training

def test_bf16_training_step_gives_float32_gradients(bf16_on, tiny_generator):
    torch.manual_seed(0)
    G = tiny_generator('raycond2', 32, num_fp16_res=4).train().requires_grad_(True)
    D = networks_raycond2.Discriminator(img_resolution=32, channel_base=512, channel_max=32, num_fp16_res=4,
                                        conv_clamp=256).train()
    c = cameras(4)
    out = {}
    seen = dtypes_of_blocks(G, lambda: out.setdefault('img', G(torch.randn([4, G.z_dim]), c)))
    img = out['img']
    assert torch.bfloat16 in seen
    loss = torch.nn.functional.softplus(-D(img, c)).mean()
    assert img.dtype == torch.float32 and loss.dtype == torch.float32
    loss.backward()
    w = G.synthesis.b32.conv1.weight
    assert w.grad.dtype == torch.float32 and torch.isfinite(w.grad).all() and w.grad.abs().sum() > 0
    # R1: gradient of D's logits with respect to the real images, in float32, twice differentiable.
    real = torch.randn([4, 3, 32, 32], requires_grad=True)
    grad, = torch.autograd.grad(D(real, c).sum(), real, create_graph=True)
    assert grad.dtype == torch.float32
    grad.square().sum().backward()
    assert torch.isfinite(D.b32.conv0.weight.grad).all()


def test_strided_fir_filter_in_bf16_keeps_dtype_and_gradients():
    """upfirdn2d runs a strided depthwise filter that needs a gradient in float32 on the CPU (oneDNN's
    bf16 backward of it is slow): the result and the gradient keep bf16 and match float32's."""
    from torch_utils.ops import upfirdn2d
    f = upfirdn2d.setup_filter([1, 3, 3, 1])
    x32 = torch.randn([2, 8, 16, 16]).contiguous(memory_format=torch.channels_last)
    out = {}
    for dtype in (torch.float32, torch.bfloat16):
        for name, op in (('down', upfirdn2d.downsample2d), ('up', upfirdn2d.upsample2d)):
            x = x32.detach().to(dtype).requires_grad_(True)
            y = op(x, f)
            (y.float() * torch.linspace(-1, 1, y.shape[-1])).sum().backward()
            assert y.dtype == dtype and x.grad.dtype == dtype
            out[dtype, name] = (y.float(), x.grad.float())
    for name in ('down', 'up'):
        for a, b in zip(out[torch.bfloat16, name], out[torch.float32, name]):
            torch.testing.assert_close(a, b, atol=0.05, rtol=0.02)


def test_bias_act_clamp_in_bf16_clamps_and_passes_gradients_inside():
    """bf16 clamps through hardtanh (a faster backward on the CPU): same values as float32's clamp, zero
    gradient where clamped, and twice differentiable (R1 goes through D's clamped layers)."""
    from torch_utils.ops import bias_act
    x32 = torch.tensor([[-600.0, -100.0, 0.5, 100.0, 600.0]]).reshape(1, 5, 1, 1)
    x = x32.to(torch.bfloat16).requires_grad_(True)
    y = bias_act.bias_act(x, act='linear', gain=2.0, clamp=256)
    assert y.dtype == torch.bfloat16
    torch.testing.assert_close(y.float(), bias_act.bias_act(x32, act='linear', gain=2.0, clamp=256))
    grad, = torch.autograd.grad(y.sum(), x, create_graph=True)
    assert grad.flatten().tolist() == [0.0, 2.0, 2.0, 2.0, 0.0]
    assert grad.requires_grad


# ----------------------------------------------------------------------------- tools

@pytest.fixture
def fp16_pickle(tmp_path, tiny_generator):
    """A small raycond2 network whose 2 highest resolutions are fp16 layers."""
    import pickle
    path = tmp_path / 'rc2-fp16.pkl'
    with open(path, 'wb') as f:
        pickle.dump({'G_ema': tiny_generator('raycond2', 32, num_fp16_res=2)}, f)
    return str(path)


def test_renderer_renders_bf16_and_says_so(bf16_on, fp16_pickle):
    from viz.renderer import RenderArgs, Renderer
    args = RenderArgs(pkl=fp16_pickle, device='cpu', yaw_deg=10.0)
    bf16 = Renderer().render(args)
    fp32 = Renderer().render(args.replace(force_fp32=True))
    assert bf16.error is None and bf16.precision == 'bf16 layers (4 of 4 blocks)' and fp32.precision == 'fp32'
    mse = float(((bf16.image.astype(np.float64) - fp32.image) ** 2).mean())
    assert 0 < mse and 10 * math.log10(255 ** 2 / mse) >= PSNR_BOUND


def test_gen_images_fp32_switch_turns_bf16_off(bf16_on, tmp_path, fp16_pickle):
    from conftest import run_script
    import PIL.Image
    outs = {}
    for name, extra in (('auto', []), ('fp32', ['--fp32'])):
        r = run_script('gen_images.py', '--network', fp16_pickle, '--seeds', '0', '--outdir', str(tmp_path / name),
                       '--device', 'cpu', *extra)
        assert r.returncode == 0, r.stderr
        outs[name] = np.asarray(PIL.Image.open(tmp_path / name / 'seed0000.png'), dtype=np.float64)
    mse = float(((outs['auto'] - outs['fp32']) ** 2).mean())
    assert 0 < mse and 10 * math.log10(255 ** 2 / mse) >= PSNR_BOUND


# ----------------------------------------------------------------------------- benchmarks

FAKE_PUBLISHED = '''
import time
import torch

class Generator(torch.nn.Module):
    """Stands in for the published code's interface: mapping(z, c) and synthesis(ws, noise_mode, force_fp32)."""
    def __init__(self, z_dim, c_dim, w_dim, img_resolution, img_channels, mapping_kwargs={}, synthesis_kwargs={}):
        super().__init__()
        self.res = img_resolution
        self.kwargs = synthesis_kwargs
        self.mapping = lambda z, c: z[:, None, :w_dim]
        self.synthesis = lambda ws, noise_mode, force_fp32: time.sleep(0.05)   # 50 ms per image
'''


def test_bench_generator_times_a_published_checkout_side_by_side(tmp_path):
    """--published DIR: one process for the checkout's code, two for this code (default, --fp32),
    and a table row with both ratios."""
    from click.testing import CliRunner
    from benchmarks import bench_generator
    (tmp_path / 'training').mkdir()
    (tmp_path / 'training' / '__init__.py').write_text('')
    (tmp_path / 'training' / 'networks.py').write_text(FAKE_PUBLISHED)
    r = CliRunner().invoke(bench_generator.main, ['--published', str(tmp_path), '--cfg', 'stylegan2', '--res', '16',
                                                  '--cbase', '256', '--cmax', '16', '--rounds', '1', '--iters', '1',
                                                  '--warmup', '0', '--threads', '1'])
    assert r.exit_code == 0, r.output
    row = [line for line in r.stdout.splitlines() if line.startswith('| 16x16 |')]
    assert len(row) == 1
    cells = [c.strip() for c in row[0].strip('|').split('|')]
    published, default, ratio = float(cells[1]), float(cells[2]), float(cells[3])
    assert published >= 50 and default > 0 and ratio == pytest.approx(default / published, abs=0.01)


def test_bench_generator_published_needs_a_stylegan_checkout(tmp_path):
    from click.testing import CliRunner
    from benchmarks import bench_generator
    r = CliRunner().invoke(bench_generator.main, ['--published', str(tmp_path), '--res', '16', '--rounds', '1',
                                                  '--iters', '1', '--warmup', '0', '--threads', '1'])
    assert r.exit_code != 0 and 'no training/networks_stylegan2.py or training/networks.py' in r.output


def test_train_py_builds_bf16_layers_on_a_bf16_cpu(tmp_path):
    """train.py picks mixed precision on a CPU with bf16 as on CUDA: num_fp16_res=4 and conv_clamp=256
    (a short run completes and records them)."""
    import json
    import os
    import subprocess
    import sys
    from conftest import ROOT, make_camera_zip
    data = make_camera_zip(tmp_path / 'data.zip', n=8, res=32)
    env = dict(os.environ, OMP_NUM_THREADS='1', RAYCOND_CPU_BF16='1', CUDA_VISIBLE_DEVICES='')   # the CPU
    r = subprocess.run([sys.executable, os.path.join(ROOT, 'train.py'), '--outdir', str(tmp_path / 'runs'), '--data', data,
                        '--cfg=raycond2', '--kimg=0.008', '--tick=0.004', '--batch=4', '--gamma=1', '--cbase=1024',
                        '--cmax=32', '--map-depth=2', '--workers=0', '--snap=1', '--metrics=none'],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    [run] = os.listdir(tmp_path / 'runs')
    with open(tmp_path / 'runs' / run / 'training_options.json') as f:
        opts = json.load(f)
    for net in ('G_kwargs', 'D_kwargs'):
        assert opts[net]['num_fp16_res'] == 4 and opts[net]['conv_clamp'] == 256


# ----------------------------------------------------------------------------- photo inversion

def spy_synthesis(monkeypatch, G):
    """Records (force_fp32, block dtypes) of every synthesis call of G's class (the inversion renders
    a deep copy of G, pivot and tuning alike, through the camera and camera-less branches)."""
    calls = []
    cls = type(G.synthesis)
    forward = cls.forward

    def spy(self, *args, **kwargs):
        out = []
        seen = dtypes_of_blocks(types.SimpleNamespace(synthesis=self),
                                lambda: out.append(forward(self, *args, **kwargs)))
        calls.append((kwargs.get('force_fp32'), set(seen)))
        return out[0]
    monkeypatch.setattr(cls, 'forward', spy)
    return calls


@pytest.mark.parametrize('camera', [True, False])
def test_inversion_bf16_by_default_fp32_when_asked(bf16_on, monkeypatch, tiny_generator, camera):
    """Inversions follow every tool's rule by default: the fp16 layers run in bf16, pivot and tuning
    alike (docs/performance.md); fp32=True runs every layer in float32."""
    from raycond import inversion
    from raycond.inversion.state import synthesize
    extra = {} if camera else dict(c_dim=0, embedding='none')
    G = tiny_generator('raycond2', 32, num_fp16_res=2, **extra)
    info = loading.network_info(G)
    c = gen.c_for_network(info, 10.0, 0.0)
    with torch.no_grad():
        target = gen.to_uint8(synthesize(G, gen.map_latents(G, torch.zeros([1, G.z_dim]), c), c, info.camera))
    calls = spy_synthesis(monkeypatch, G)
    config = inversion.InversionConfig(num_steps=3, tune_steps=2, loss='pixel', camera_start='grid')
    assert not config.fp32
    results = {}
    for fp32 in (False, True):
        calls.clear()
        res = inversion.invert(G, target[0].numpy(), camera=c if camera else None, info=info,
                               config=config.replace(fp32=fp32), verbose=False)
        assert len(calls) >= 5                                                  # pivot and tuning steps at least
        assert {force for force, _ in calls} == {fp32}
        dtypes = set().union(*(seen for _, seen in calls))
        assert (torch.bfloat16 in dtypes) != fp32 and torch.float32 in dtypes
        img = res.render()
        assert img.dtype == torch.float32 and torch.isfinite(img).all() and torch.isfinite(res.ws).all()
        assert all(torch.isfinite(v).all() for v in res.G.state_dict().values())
        results[fp32] = img
    assert psnr(results[False], results[True]) >= 30.0                          # same inversion, bf16 layers


def test_inversion_losses_see_float32(bf16_on, monkeypatch, tiny_generator):
    """Whatever dtype a network returns, the inversion's losses get float32 renders."""
    from raycond import inversion
    from raycond.inversion import state
    from raycond.inversion.losses import make_loss
    G = tiny_generator('raycond2', 32, num_fp16_res=2)
    info = loading.network_info(G)
    synthesize = state.rgen.synthesize
    monkeypatch.setattr(state.rgen, 'synthesize', lambda *a, **k: synthesize(*a, **k).to(torch.bfloat16))
    seen = []
    loss = make_loss('pixel', torch.zeros([1, 3, 32, 32]), 'cpu', log=lambda *a: None)
    run = state.Run(G, info, lambda img, c: seen.append(img.dtype) or loss(img, c),
                    inversion.InversionConfig(fp32=False), 'cpu', None, lambda *a: None)
    assert run.force_fp32 is False
    c = run.label(torch.zeros(1), torch.zeros(1))
    run.loss_fn(run.render(G, run.ws_from(run.w_avg[:, None], c), c), c)
    assert seen == [torch.float32]


def test_inversion_run_precision_follows_the_config(bf16_on, tiny_generator):
    """The default config lets a network with bf16 blocks run them in bf16 on such a CPU; fp32=True does not."""
    from raycond import inversion
    from raycond.inversion import state
    G = tiny_generator('raycond2', 32, num_fp16_res=2)
    info = loading.network_info(G)

    def run(config):
        return state.Run(G, info, lambda img, c: img.mean(), config, 'cpu', None, lambda *a: None)
    assert run(inversion.InversionConfig()).force_fp32 is False
    assert run(inversion.InversionConfig(fp32=True)).force_fp32 is True


def test_projector_fp32_reaches_the_inversion_config(monkeypatch, tmp_path, small_pickle):
    """projector.py follows the precision rule unless --fp32 (or --option fp32=true); the flag wins when given."""
    from click.testing import CliRunner
    import PIL.Image
    import projector
    photo = tmp_path / 'photo.png'
    PIL.Image.fromarray(np.full((32, 32, 3), 120, np.uint8)).save(photo)
    configs = []

    def fake_invert(G, target, camera=None, config=None, **kwargs):
        configs.append(config)
        raise ValueError('stopped after the config was read')
    monkeypatch.setattr(projector.inversion, 'invert', fake_invert)
    runs = ([], ['--fp32'], ['--option=fp32=true'], ['--option=fp32=false'], ['--option=fp32=false', '--fp32'])
    for extra in runs:
        r = CliRunner().invoke(projector.main, [f'--network={small_pickle}', f'--target={photo}',
                                                f'--outdir={tmp_path / "out"}', '--device=cpu', '--no-align', *extra])
        assert 'stopped after the config was read' in r.output, r.output
    assert [c.fp32 for c in configs] == [False, True, True, False, True]

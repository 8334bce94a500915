"""raycond.cli_options: the camera options that gen_images.py, gen_video.py and projector.py share."""

import numpy as np
import PIL.Image
import pytest
from click.testing import CliRunner

import gen_images
import gen_video
import projector
from raycond import camera as cam
from raycond import cli_options
from raycond import generate as gen

CAMERA_OPTIONS = ("fov", "radius", "lookat", "preset")


def _params(command):
    return {p.name: p for p in command.params}


@pytest.mark.parametrize("script", [gen_images, gen_video, projector])
def test_scripts_offer_the_same_camera_options(script):
    mine, reference = _params(script.main), _params(gen_images.main)
    for name in CAMERA_OPTIONS:
        assert mine[name].help == reference[name].help and mine[name].default is None


def test_scripts_offer_the_noise_modes_of_the_library():
    for script in (gen_images, gen_video):
        assert tuple(_params(script.main)["noise_mode"].type.choices) == gen.NOISE_MODES


def test_preset_sets_radius_lookat_and_fov():
    p = cam.get_preset("cars")
    assert cli_options.camera_model(None, None, None, "cars") == (pytest.approx(p.fov_deg), p.radius, p.lookat)


def test_explicit_values_override_the_preset():
    fov, radius, lookat = cli_options.camera_model(20.0, 3.0, "0,0,0", "cars")
    assert (fov, radius, lookat) == (20.0, 3.0, (0.0, 0.0, 0.0))


def test_fov_outside_0_180_is_refused():
    with pytest.raises(ValueError, match="--fov must be between 0 and 180"):
        cli_options.camera_model(180.0, None, None, None)


def test_unknown_angle_style_is_a_programming_error():
    with pytest.raises(ValueError, match="angles must be one of"):
        cli_options.camera_options(angles="range")


def test_gen_video_preset_moves_the_camera(tmp_path, small_pickle):
    def first_frame(*extra):
        out = tmp_path / f"v{len(extra)}.gif"
        r = CliRunner().invoke(gen_video.main, [f"--network={small_pickle}", "--seeds=0", "--w-frames=1",
                                                f"--output={out}", "--device=cpu", *extra])
        assert r.exit_code == 0, r.output
        with PIL.Image.open(out) as im:
            return np.asarray(im.convert("RGB")).astype(int)
    assert np.abs(first_frame() - first_frame("--preset=cars")).mean() > 0.5


def test_projector_refuses_camera_model_without_a_known_camera(tmp_path, small_pickle):
    r = CliRunner().invoke(projector.main, [f"--network={small_pickle}", f"--target={tmp_path / 'x.png'}",
                                            "--radius=3"])
    assert r.exit_code != 0 and "give them with --yaw and --pitch" in r.output


def test_one_line_errors_turns_failures_into_one_click_error_and_keeps_click_errors(capsys):
    import click
    import pytest
    from raycond.cli_options import one_line_errors
    with pytest.raises(click.ClickException, match='^bad value$'):
        with one_line_errors(verbose=False):
            raise ValueError('bad value')
    assert 'Traceback' not in capsys.readouterr().err
    with pytest.raises(click.ClickException, match='^KeyError'):      # no message: the type names it
        with one_line_errors(verbose=True):
            raise KeyError()
    assert 'Traceback' in capsys.readouterr().err
    with pytest.raises(click.BadParameter):
        with one_line_errors(verbose=False):
            raise click.BadParameter('kept as click raised it')


def test_runtime_options_are_the_same_in_every_script():
    import click

    @click.command()
    @cli_options.runtime_options(batch_default=3)
    def probe(**kwargs):
        click.echo(repr(sorted(kwargs.items())))

    result = CliRunner().invoke(probe, [])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == repr(sorted(dict(device="auto", batch_size=3, fp32=False, num_threads=0,
                                                     trust_pickle=False).items()))
    assert CliRunner().invoke(probe, ["--batch", "0"]).exit_code != 0
    for script, has_batch, has_fp32 in ((gen_images, True, True), (gen_video, True, True), (projector, False, True)):
        params = _params(script.main)
        assert {"device", "num_threads", "trust_pickle"} <= set(params)
        assert ("batch_size" in params, "fp32" in params) == (has_batch, has_fp32), script.__name__
        assert params["trust_pickle"].help == params["trust_pickle"].help.strip() and "only for files you trust" in params["trust_pickle"].help

"""raycond.generate: parsing, latents, camera labels, synthesis dispatch and grids."""

import numpy as np
import pytest
import torch

from raycond import generate as gen
from raycond.loading import network_info


def test_parse_int_list():
    assert gen.parse_int_list("0-3,7") == [0, 1, 2, 3, 7]
    assert gen.parse_int_list("1,5,9") == [1, 5, 9]
    with pytest.raises(ValueError, match="ends before it starts"):
        gen.parse_int_list("5-1")
    with pytest.raises(ValueError, match="cannot parse"):
        gen.parse_int_list("a-b")


def test_parse_float_list():
    assert gen.parse_float_list("-30,0,30") == [-30.0, 0.0, 30.0]
    assert gen.parse_float_list("-30:30:3") == [-30.0, 0.0, 30.0]
    with pytest.raises(ValueError):
        gen.parse_float_list("x")


def test_seeds_to_z_matches_numpy_randomstate():
    z = gen.seeds_to_z([7, 8], 5)
    assert z.shape == (2, 5)
    np.testing.assert_allclose(z[1].numpy(), np.random.RandomState(8).randn(5).astype(np.float32))


def test_resolve_device():
    assert gen.resolve_device("cpu").type == "cpu"
    assert gen.resolve_device("auto").type in ("cpu", "cuda", "mps")
    with pytest.raises(ValueError, match="unknown device"):
        gen.resolve_device("tpu")


def test_auto_device_picks_mps_only_where_allowed(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(gen, "mps_available", lambda: True)
    assert gen.resolve_device("auto").type == "mps"
    assert gen.resolve_device("auto", allow_mps=False).type == "cpu"


def test_training_refuses_mps_by_name():
    with pytest.raises(ValueError, match="training runs on CUDA or the CPU only"):
        gen.resolve_device("mps", allow_mps=False)


def test_unknown_noise_mode_names_the_valid_ones():
    with pytest.raises(ValueError, match="one of const, random, none"):
        gen.check_noise_mode("fixed")


def test_make_grid_layout():
    imgs = np.stack([np.full((2, 3, 1), i, np.uint8) for i in range(5)])
    g = gen.make_grid(imgs, 2, 3)
    assert g.shape == (4, 9, 1)
    assert g[0, 3, 0] == 1 and g[2, 0, 0] == 3 and g[3, 8, 0] == 255


def test_camera_changes_image(small_generator):
    info = network_info(small_generator)
    a = gen.generate_images(small_generator, [1], gen.c_for_network(info, -30.0, 0.0))
    b = gen.generate_images(small_generator, [1], gen.c_for_network(info, 30.0, 0.0))
    a2 = gen.generate_images(small_generator, [1], gen.c_for_network(info, -30.0, 0.0))
    assert np.array_equal(a, a2)
    assert np.abs(a.astype(int) - b.astype(int)).mean() > 0.5


def test_camera_of_wrong_shape_rejected(small_generator):
    ws = gen.map_latents(small_generator, gen.seeds_to_z([1], 32))
    with pytest.raises(ValueError, match="shape"):
        gen.synthesize(small_generator, ws, torch.zeros(1, 16))


def test_camera_with_nan_rejected(small_generator):
    ws = gen.map_latents(small_generator, gen.seeds_to_z([1], 32))
    bad = gen.c_for_network(network_info(small_generator), 0.0, 0.0).clone()
    bad[0, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        gen.synthesize(small_generator, ws, bad)


def test_to_uint8_range():
    x = torch.tensor([-2.0, -1.0, 0.0, 1.0, 2.0]).reshape(1, 1, 1, 5)
    assert gen.to_uint8(x).flatten().tolist() == [0, 0, 128, 255, 255]


@pytest.mark.parametrize("fp32", [False, True])
@pytest.mark.parametrize("device", ["cpu", "mps", torch.device("cpu")])
def test_force_fp32_off_cuda_whatever_the_flag(device, fp32):
    assert gen.force_fp32_for(device, fp32) is True


def test_fp16_layers_on_cuda_unless_fp32_asked():
    for device in ("cuda", "cuda:1", torch.device("cuda", 0)):
        assert gen.force_fp32_for(device) is False
        assert gen.force_fp32_for(device, fp32=True) is True

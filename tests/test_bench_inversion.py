"""benchmarks/bench_inversion.py runs end to end on the bundled network, with both kinds of truth."""

import os
import sys

import pytest
from click.testing import CliRunner

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))

import bench_inversion  # noqa: E402


@pytest.mark.parametrize("truth", ["heads", "samples"])
def test_bench_inversion_prints_its_tables(truth):
    args = ["--num-heads=1", "--seed=3", "--rows=ad", "--loss=pixel", "--num-steps=2", "--tune-steps=2",
            "--threads=1", f"--truth={truth}"]
    result = CliRunner().invoke(bench_inversion.main, args)
    assert result.exit_code == 0, result.output
    out = result.output
    assert ("1 heads" if truth == "heads" else "1 own samples") in out
    copy_row = next(line for line in out.splitlines() if line.startswith("| (a) copy"))
    assert copy_row.split("|")[2].strip() == "—"       # the photo is its own input view: not scored
    copy_novel = float(copy_row.split("|")[9])
    d_row = next(line for line in out.splitlines() if line.startswith("| (d) W+PTI"))
    input_psnr = float(d_row.split("|")[2].split("/")[0])
    assert 10 < input_psnr < 60 and 5 < copy_novel < 40
    assert "Quality/time frontier" in out


def test_samples_truth_renders_one_latent_at_every_camera():
    import numpy as np
    import torch

    from raycond import loading
    G = loading.load_network(bench_inversion.DEFAULT_NETWORK)
    cams = bench_inversion.view_cameras(10.0, -5.0)
    a = bench_inversion.own_sample(G, cams, np.random.default_rng(1))
    b = bench_inversion.own_sample(G, cams, np.random.default_rng(1))
    c = bench_inversion.own_sample(G, cams, np.random.default_rng(2))
    assert a.shape == (len(bench_inversion.VIEWS), G.img_resolution, G.img_resolution, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert not np.array_equal(a[0], a[1])            # the camera moves the face
    assert torch.is_tensor(cams) and cams.shape == (len(bench_inversion.VIEWS), 25)   # one label per view

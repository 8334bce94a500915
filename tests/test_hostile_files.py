"""Hostile files: nothing read from a file chooses what runs, small files stay small, and every
refusal is one line naming the file.

The corpus comes from tests/hostile_corpus.py (a generator: the files are written into a
temporary folder); every payload in it would create a marker file if it ran."""

from __future__ import annotations

import os
import pickle

import pytest

import dnnlib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ----------------------------------------------------------------------------- dataset options

@pytest.mark.parametrize("kwargs", [
    dict(class_name="os.system", command="touch {marker}"),
    dict(class_name="torch.hub.load", repo_or_dir="{dir}", model="m", source="local", trust_repo=True),
    dict(class_name="logging.basicConfig", filename="{marker}", filemode="w"),
    dict(class_name="training.dataset.ImageFolderDataset.__init__.__globals__.os.system", command="touch {marker}"),
    dict(class_name="training.dataset.ImageFolderDataset", path="{dir}", resolution=1 << 40),
    dict(class_name="training.dataset.ImageFolderDataset", path="{dir}", open_hook="os.system"),
])
def test_metric_dataset_never_calls_what_a_snapshot_names(tmp_path, kwargs, tiny_generator):
    """calc_metrics.py without --data reads the snapshot's training_set_kwargs: a class name or an
    argument outside the dataset table is refused before anything is called."""
    import calc_metrics
    from metrics import metric_utils
    marker = tmp_path / "pwned"
    (tmp_path / "hubconf.py").write_text(f"open({str(marker)!r}, 'w').write('x')\ndef m(): pass\n")
    kwargs = dnnlib.EasyDict({k: v.format(marker=marker, dir=tmp_path) if isinstance(v, str) else v
                              for k, v in kwargs.items()})
    with pytest.raises(ValueError, match="refused") as info:
        metric_utils.make_dataset(kwargs)
    assert "\n" not in str(info.value)
    G = tiny_generator("raycond2", 16)
    with pytest.raises(ValueError, match="give the dataset with --data") as info:
        calc_metrics.dataset_kwargs_for({"training_set_kwargs": kwargs}, G, None, None, None, "evil.pkl")
    assert str(info.value).startswith("evil.pkl: its training_set_kwargs were ignored")
    assert not marker.exists()


def test_calc_metrics_cli_refuses_snapshot_dataset_that_names_os_system(tmp_path, tiny_generator):
    from tests.conftest import run_script
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    with open(path, "wb") as f:
        pickle.dump({"G_ema": tiny_generator("raycond2", 16),
                     "training_set_kwargs": dnnlib.EasyDict(class_name="os.system", command=f"touch {marker}")}, f)
    proc = run_script("calc_metrics.py", "--network", str(path), "--metrics", "fid50k_full", "--device", "cpu")
    assert proc.returncode != 0 and not marker.exists()
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "evil.pkl" in lines[0] and "--data" in lines[0], proc.stderr

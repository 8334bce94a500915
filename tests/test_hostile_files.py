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
    from conftest import run_script
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    with open(path, "wb") as f:
        pickle.dump({"G_ema": tiny_generator("raycond2", 16),
                     "training_set_kwargs": dnnlib.EasyDict(class_name="os.system", command=f"touch {marker}")}, f)
    proc = run_script("calc_metrics.py", "--network", str(path), "--metrics", "fid50k_full", "--device", "cpu")
    assert proc.returncode != 0 and not marker.exists()
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "evil.pkl" in lines[0] and "--data" in lines[0], proc.stderr


# ----------------------------------------------------------------------------- the corpus

CLI_FILES = ("os_system_p2.pkl", "st_class_prefix_linear.safetensors", "pt_zip_bomb.pt", "nested_list_300k.pkl",
             "kwargs_zdim_8192.pkl", "camera_stats_stride0.pkl")


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    """(folder, entries) of the generated hostile corpus (written once per session)."""
    import hostile_corpus
    folder = str(tmp_path_factory.mktemp("hostile"))
    return folder, hostile_corpus.generate(folder)


def _marker(folder):
    import hostile_corpus
    return os.path.join(folder, hostile_corpus.MARKER)


def test_corpus_covers_every_kind_of_attack(corpus):
    folder, entries = corpus
    names = {e.name for e in entries}
    assert len(entries) >= 80
    assert {e.expect for e in entries} == {"code", "data", "load"}
    assert {f"os_system_p{p}.pkl" for p in range(6)} <= names
    assert set(CLI_FILES) <= names
    assert all(os.path.getsize(os.path.join(folder, n)) < 1 << 20 for n in names)


def test_whole_corpus_in_a_fresh_process_runs_nothing_and_stays_small(corpus):
    """Every file through raycond.loading.load_snapshot in a subprocess: the outcome each entry
    expects (code is UntrustedPickleError, data a plain NetworkLoadError), one line naming the file,
    no advice to load unsafely, no payload run, peak RSS growth <= 200 MB and <= 5 s of CPU per file."""
    import json
    import subprocess
    import sys
    folder, entries = corpus
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "tests", "hostile_corpus.py"), "--measure", folder,
                           "--json"], capture_output=True, text=True, timeout=600, cwd=ROOT,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout)
    assert result["files"] == len(entries) and result["payloads_run"] == 0
    assert not os.path.exists(_marker(folder))
    wrong = [(r["name"], r["expect"], r["outcome"], r["message"][:200]) for r in result["rows"]
             if r["outcome"] != r["expect"]]
    assert not wrong
    for r in result["rows"]:
        if r["outcome"] == "load":
            continue
        path = os.path.join(folder, r["name"])
        assert r["message"].startswith(path) and "\n" not in r["message"], r
        assert "weights_only" not in r["message"] and "Traceback" not in r["message"], r
        assert ("--trust-pickle" in r["message"]) == (r["outcome"] == "code"), r
        assert r["cpu_s"] <= 5.0, r
        if r["rss_growth_kib"] is not None:
            assert r["rss_growth_kib"] <= 200 * 1024, r


def test_loadable_hostile_files_never_reach_a_callable(corpus):
    """Files that load (real networks with hostile training_set_kwargs) are refused where the
    options would be used: the metrics' dataset."""
    import calc_metrics
    from metrics import metric_utils
    from raycond import loading
    folder, entries = corpus
    loadable = [e for e in entries if e.expect == "load"]
    assert loadable
    for entry in loadable:
        path = os.path.join(folder, entry.name)
        snapshot = loading.load_snapshot(path)
        kwargs = snapshot.get("training_set_kwargs")
        if kwargs is None:
            continue
        with pytest.raises(ValueError, match="--data"):
            calc_metrics.dataset_kwargs_for(snapshot, snapshot["G_ema"], None, None, None, path)
        with pytest.raises(ValueError, match="refused"):
            metric_utils.make_dataset(kwargs)
    assert not os.path.exists(_marker(folder))


def _one_line_refusal(proc, path, marker):
    assert proc.returncode != 0, proc.stdout[-500:]
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and os.path.basename(path) in lines[0], proc.stderr[-3000:]
    assert "weights_only" not in proc.stderr and "Traceback" not in proc.stderr
    assert not os.path.exists(marker)


def _cli_args(tool, path, tmp_path):
    from conftest import make_camera_zip
    out = str(tmp_path / "out")
    if tool == "gen_images.py":
        return ["gen_images.py", "--network", path, "--seeds", "0", "--outdir", out]
    if tool == "gen_video.py":
        return ["gen_video.py", "--network", path, "--seeds", "0", "--output", str(tmp_path / "v.gif")]
    if tool == "calc_metrics.py":
        return ["calc_metrics.py", "--network", path, "--metrics", "fid50k_full", "--device", "cpu"]
    if tool == "train.py":
        data = make_camera_zip(tmp_path / "data.zip", n=4, res=16)
        return ["train.py", "--outdir", out, "--cfg", "raycond2", "--data", data, "--gpus", "1", "--batch", "4",
                "--gamma", "1", "--kimg", "1", "--resume", path, "--metrics", "none", "--dry-run"]
    if tool == "projector.py":
        import numpy as np
        import PIL.Image
        target = tmp_path / "face.png"
        PIL.Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(target)
        return ["projector.py", "--network", path, "--target", str(target), "--outdir", out]
    return ["-m", "raycond.convert", path, str(tmp_path / "out.safetensors")]


def _run_cli(args):
    import subprocess
    import sys
    cmd = [sys.executable] + ([os.path.join(ROOT, args[0])] + args[1:] if args[0].endswith(".py") else args)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT,
                          env=dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=ROOT))


@pytest.mark.parametrize("tool, name", [("gen_images.py", "st_class_prefix_linear.safetensors"),
                                        ("train.py", "kwargs_zdim_8192.pkl")])
def test_cli_refuses_hostile_file_in_one_line(tmp_path, corpus, tool, name):
    folder, _ = corpus
    path = os.path.join(folder, name)
    _one_line_refusal(_run_cli(_cli_args(tool, path, tmp_path)), path, _marker(folder))


@pytest.mark.slow
@pytest.mark.parametrize("name", CLI_FILES)
@pytest.mark.parametrize("tool", ["gen_images.py", "gen_video.py", "calc_metrics.py", "train.py", "projector.py",
                                  "raycond.convert"])
def test_every_cli_refuses_hostile_files_in_one_line(tmp_path, corpus, tool, name):
    folder, _ = corpus
    path = os.path.join(folder, name)
    _one_line_refusal(_run_cli(_cli_args(tool, path, tmp_path)), path, _marker(folder))


# ----------------------------------------------------------------------------- named cases

def test_safetensors_class_is_matched_exactly_not_by_prefix(tmp_path):
    """'training.networks_stylegan2.torch.nn.Linear' once built torch.nn.Linear (1 GiB from 284 bytes)."""
    import hostile_corpus
    from raycond import loading
    path = tmp_path / "linear.safetensors"
    path.write_bytes(hostile_corpus._safetensors({"G_ema": {
        "class_name": "training.networks_stylegan2.torch.nn.Linear", "init_args": [16384, 16384], "init_kwargs": {}}}))
    with pytest.raises(loading.NetworkLoadError, match="which is not a network class of this project") as info:
        loading.load_network(str(path))
    assert not isinstance(info.value, loading.UntrustedPickleError)
    assert str(info.value).startswith(f"{path}: networks['G_ema'] names class")


def test_oversized_constructor_is_refused_before_it_is_built(tmp_path, tiny_generator, monkeypatch):
    """z_dim=w_dim=8192 is within the argument limits, but its weights (hundreds of MB) cannot be
    in a file of a few hundred KB: refused from the fake-tensor estimate, the class never constructed."""
    import torch

    import hostile_corpus
    from raycond import loading
    from training import networks_raycond2
    G = tiny_generator("raycond2", 16)
    fn, meta = hostile_corpus._record_meta(G)
    meta["state"]["_init_kwargs"] = dict(meta["state"]["_init_kwargs"], z_dim=8192, w_dim=8192)
    path = tmp_path / "wide.pkl"
    path.write_bytes(pickle.dumps({"G_ema": hostile_corpus._persistent(meta)}))
    built = []
    real_init = networks_raycond2.Generator.__init__

    def spy(self, *args, **kwargs):
        built.append(isinstance(torch.empty(0), torch._subclasses.fake_tensor.FakeTensor))
        real_init(self, *args, **kwargs)
    monkeypatch.setattr(networks_raycond2.Generator, "__init__", spy)
    with pytest.raises(loading.NetworkLoadError, match=r"G_ema \(Generator\) would need .* MiB of weights"):
        loading.load_snapshot(str(path))
    assert built == [True]          # only the fake build ran


def test_writers_write_only_what_the_loader_accepts(tmp_path, tiny_generator):
    import torch

    from raycond import loading, safe_weights
    from raycond.convert import main
    G = tiny_generator("raycond2", 16)
    with pytest.raises(loading.NetworkLoadError, match="weight files cannot hold"):
        safe_weights.save_safetensors(str(tmp_path / "x.safetensors"), {"G_ema": G.mapping})
    assert not (tmp_path / "x.safetensors").exists()
    src = tmp_path / "evil.pkl"
    with open(src, "wb") as f:
        pickle.dump({"G_ema": G, "training_set_kwargs": dnnlib.EasyDict(class_name="os.system", command="true")}, f)
    for ext in (".safetensors", ".pt"):
        out = tmp_path / f"out{ext}"
        assert main([str(src), str(out)]) == 0
        snapshot = loading.load_snapshot(str(out))
        assert "training_set_kwargs" not in snapshot and isinstance(snapshot["G_ema"], torch.nn.Module)


def test_resume_refuses_a_snapshot_with_bad_progress_in_one_line(tmp_path, tiny_generator):
    from conftest import make_camera_zip
    path = tmp_path / "snap.pkl"
    with open(path, "wb") as f:
        pickle.dump({"G_ema": tiny_generator("raycond2", 16), "progress": {"cur_nimg": "x" * 50}}, f)
    data = make_camera_zip(tmp_path / "data.zip", n=4, res=16)
    proc = _run_cli(["train.py", "--outdir", str(tmp_path / "out"), "--cfg", "raycond2", "--data", data, "--gpus", "1",
                     "--batch", "4", "--gamma", "1", "--kimg", "1", "--resume", str(path), "--metrics", "none",
                     "--dry-run"])
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "progress.cur_nimg" in lines[0] and str(path) in lines[0], proc.stderr

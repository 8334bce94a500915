"""raycond.loading: our pickles, safe weight files, run directories, and clear errors."""

import os
import pickle

import pytest
import torch

from raycond import generate as gen
from raycond.loading import (NetworkLoadError, load_network, load_network_and_info, load_snapshot,
                             save_safe_weights)


def test_load_our_pickle_reports_camera(small_pickle):
    G, info = load_network_and_info(small_pickle)
    assert info.kind == "raycond2" and info.camera and info.synthesis_takes_c
    assert info.c_dim == 25 and info.img_resolution == 32 and info.num_ws == G.num_ws
    assert info.camera_stats["radius"] == 2.7
    assert not any(p.requires_grad for p in G.parameters()) and not G.training
    assert info.num_params == sum(p.numel() for p in G.parameters())


@pytest.mark.parametrize("content,match", [
    (None, "not found"),
    (b"", "empty"),
    (b"this is not a pickle", "is a text file, expected a network file"),
    (pickle.dumps({"foo": 1}), "no network under 'G_ema'"),
    (pickle.dumps([1, 2, 3]), "holds a list"),
])
def test_clear_errors(tmp_path, content, match):
    path = tmp_path / "bad.pkl"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(NetworkLoadError, match=match):
        load_network(str(path))


def test_run_directory_picks_newest_snapshot(tmp_path, small_generator):
    for kimg in (0, 40, 12):
        with open(tmp_path / f"network-snapshot-{kimg:06d}.pkl", "wb") as f:
            pickle.dump({"G_ema": small_generator, "kimg": kimg}, f)
    assert load_snapshot(str(tmp_path))["kimg"] == 40
    empty = tmp_path / "empty-run"
    empty.mkdir()
    with pytest.raises(NetworkLoadError, match="without network-snapshot"):
        load_snapshot(str(empty))


def test_safe_weights_round_trip_fp16(tmp_path, small_generator):
    path = str(tmp_path / "g.pt")
    save_safe_weights(path, {"G_ema": small_generator}, dtype=torch.float16, camera_stats={"radius": 2.7})
    G, info = load_network_and_info(path)
    assert info.camera_stats == {"radius": 2.7}
    c = gen.c_for_network(info, 20.0, 0.0)
    a = gen.generate_images(small_generator, [3], c)
    b = gen.generate_images(G, [3], c)
    assert a.shape == b.shape == (1, 32, 32, 3)
    assert abs(a.astype(int) - b.astype(int)).max() <= 3  # fp16 storage, fp32 compute


def test_safe_weights_refuse_non_raycond_torch_file(tmp_path):
    path = tmp_path / "w.pt"
    torch.save({"weights": torch.zeros(3)}, path)
    with pytest.raises(NetworkLoadError, match="without raycond networks"):
        load_network(str(path))


def test_export_generator_keeps_only_inference_parts(tmp_path, small_generator):
    from raycond.loading import export_generator
    snap = tmp_path / "network-snapshot-000012.pkl"
    with open(snap, "wb") as f:
        pickle.dump({"G": small_generator, "D": torch.nn.Linear(2, 2), "G_ema": small_generator,
                     "progress": {"cur_nimg": 12345}, "camera_stats": {"radius": 2.7},
                     "training_set_kwargs": {"path": "x.zip"}}, f)
    out = tmp_path / "small.pkl"
    export_generator(str(snap), str(out), trust_pickle=True)   # D is a bare torch.nn.Linear
    data = load_snapshot(str(out))
    assert set(data) == {"G_ema", "camera_stats", "training_set_kwargs", "kimg"}
    assert data["kimg"] == 12.345 and data["camera_stats"] == {"radius": 2.7}
    assert os.path.getsize(out) < os.path.getsize(snap)
    G, info = load_network_and_info(str(out))
    assert info.camera_stats == {"radius": 2.7} and info.kind == "raycond2"


def test_export_generator_with_discriminator_keeps_d(tmp_path, small_generator):
    import dnnlib
    from raycond.loading import export_generator
    D = dnnlib.util.construct_class_by_name(class_name="training.networks_raycond2.Discriminator", c_dim=25,
                                            img_resolution=32, img_channels=3, channel_base=512, channel_max=32)
    snap = tmp_path / "network-snapshot-000004.pkl"
    with open(snap, "wb") as f:
        pickle.dump({"G": small_generator, "D": D, "G_ema": small_generator, "progress": {"cur_nimg": 4000}}, f)
    out = tmp_path / "with-d.pkl"
    export_generator(str(snap), str(out), with_discriminator=True)
    data = load_snapshot(str(out))
    assert set(data) >= {"G_ema", "D"} and data["kimg"] == 4.0
    for (name, a), (_, b) in zip(data["D"].state_dict().items(), D.state_dict().items()):
        assert torch.equal(a, b), name


def test_generator_and_discriminator_from_one_file(tmp_path, small_generator):
    """Photo inversion's loader: G with its description, and D only when the file kept one."""
    import dnnlib
    from raycond.loading import load_generator_and_discriminator
    D = dnnlib.util.construct_class_by_name(class_name="training.networks_raycond2.Discriminator", c_dim=25,
                                            img_resolution=32, img_channels=3, channel_base=512, channel_max=32)
    paths = {}
    for name, content in [("g-only", {"G_ema": small_generator}), ("g-and-d", {"G": small_generator, "D": D}),
                          ("d-only", {"D": D})]:
        paths[name] = str(tmp_path / f"{name}.pkl")
        with open(paths[name], "wb") as f:
            pickle.dump(content, f)
    G, info, none = load_generator_and_discriminator(paths["g-only"])
    assert none is None and info.img_resolution == small_generator.img_resolution and not G.training
    G, _info, D2 = load_generator_and_discriminator(paths["g-and-d"])
    assert isinstance(D2, torch.nn.Module) and not D2.training
    assert all(not p.requires_grad for p in list(G.parameters()) + list(D2.parameters()))
    with pytest.raises(NetworkLoadError, match=r"has no generator \(G_ema or G\); networks present: D"):
        load_generator_and_discriminator(paths["d-only"])


def test_posecond_network_is_named_posecond2(tiny_generator):
    from raycond.loading import network_info
    G = tiny_generator("raycond2", res=16, embedding="none", camera_in_mapping=True)
    assert network_info(G).kind == "posecond2"


def test_a_network_built_with_other_values_belongs_to_the_first_row_of_its_class(tiny_generator):
    from raycond.loading import network_info
    assert network_info(tiny_generator("raycond2", res=16, embedding="origin_dir")).kind == "raycond2"
    assert network_info(tiny_generator("raycond2", res=16, embedding="none")).kind == "raycond2"


@pytest.mark.parametrize("kind", ["raycond2", "stylegan2", "stylegan3"])
def test_network_info_answers_from_the_family_table_not_from_attributes(tiny_generator, kind):
    """An attribute that a guess would read (StyleGAN3's synthesis.input, StyleGAN2's b4) changes nothing."""
    from raycond import families
    from raycond.loading import network_info
    G = tiny_generator(kind, res=16)
    G.synthesis.input = torch.nn.Identity() if not hasattr(G.synthesis, "input") else G.synthesis.input
    G.synthesis.b4 = torch.nn.Identity() if not hasattr(G.synthesis, "b4") else G.synthesis.b4
    info = network_info(G)
    assert (info.kind, info.synthesis_takes_c) == (kind, families.family(kind).camera)
    assert gen.synthesis_takes_c(G) == families.family(kind).camera


def test_gen_images_names_the_kind_that_network_info_gives(tmp_path, tiny_generator):
    from click.testing import CliRunner
    import gen_images
    path = tmp_path / "posecond.pkl"
    with open(path, "wb") as f:
        pickle.dump({"G_ema": tiny_generator("raycond2", res=16, embedding="none", camera_in_mapping=True)}, f)
    r = CliRunner().invoke(gen_images.main, [f"--network={path}", "--seeds=0", f"--outdir={tmp_path / 'out'}",
                                             "--device=cpu"])
    assert r.exit_code == 0, r.output
    assert "posecond2, 16x16" in r.output


def test_no_network_means_the_bundled_checkpoint(capsys):
    from raycond import loading
    assert os.path.isfile(loading.DEFAULT_CHECKPOINT)
    assert loading.resolve_network_arg(None) == loading.DEFAULT_CHECKPOINT
    assert "using the bundled checkpoint" in capsys.readouterr().err


def test_a_given_network_is_used_as_is():
    from raycond import loading
    assert loading.resolve_network_arg("runs/net.pkl") == "runs/net.pkl"


def test_missing_bundled_checkpoint_asks_for_network(tmp_path, monkeypatch):
    from raycond import loading
    monkeypatch.setattr(loading, "DEFAULT_CHECKPOINT", str(tmp_path / "gone.pkl"))
    with pytest.raises(NetworkLoadError, match="--network is required"):
        loading.resolve_network_arg(None)


def test_text_file_is_named_as_text_not_a_pickle_error(tmp_path):
    path = tmp_path / "notes.pkl"
    path.write_text("training went well\nkimg 200\n")
    with pytest.raises(NetworkLoadError, match="is a text file, expected a network file"):
        load_network(str(path))

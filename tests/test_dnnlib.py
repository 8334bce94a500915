"""dnnlib: EasyDict, objects by name, open_url for paths, file:// URLs, the cache and offline errors."""

import os

import pytest

import dnnlib
from dnnlib import util


def test_easydict_attribute_access():
    d = dnnlib.EasyDict(a=1)
    d.b = 2
    assert d["b"] == 2 and d.a == 1
    del d.a
    assert "a" not in d
    with pytest.raises(AttributeError):
        _ = d.missing


def test_construct_and_call_by_name():
    od = util.construct_class_by_name([("x", 1)], class_name="collections.OrderedDict")
    assert list(od.items()) == [("x", 1)]
    assert util.call_func_by_name(-3, func_name="builtins.abs") == 3
    assert util.get_obj_by_name("os.path.join") is os.path.join
    with pytest.raises(ValueError):
        util.get_obj_by_name("nodots")


def test_open_url_path_and_file_url(tmp_path):
    p = tmp_path / "x.bin"
    p.write_bytes(b"hello")
    with util.open_url(str(p)) as f:
        assert f.read() == b"hello"
    with util.open_url(p.as_uri()) as f:
        assert f.read() == b"hello"
    with pytest.raises(FileNotFoundError, match="no such file"):
        util.open_url(str(tmp_path / "missing.pkl"))


def test_open_url_uses_cache_and_names_url_when_offline(tmp_path, monkeypatch):
    url = "http://127.0.0.1:9/unreachable/detector.pkl"   # discard port: nothing listens
    monkeypatch.setenv("DNNLIB_CACHE_DIR", str(tmp_path))
    with pytest.raises(util.DownloadError) as e:
        util.open_url(url, num_attempts=1, verbose=False)
    assert url in str(e.value)
    cache_file = util.cached_url_path(url)
    assert cache_file.startswith(str(tmp_path)) and cache_file in str(e.value)
    os.makedirs(os.path.dirname(cache_file), exist_ok=True)
    with open(cache_file, "wb") as f:
        f.write(b"cached")
    with util.open_url(url, verbose=False) as f:  # placed by hand → served offline
        assert f.read() == b"cached"


def test_format_time():
    assert util.format_time(42) == "42s"
    assert util.format_time(185) == "3m 05s"
    assert util.format_time(7269) == "2h 01m 09s"


def test_atomic_write_temp_name_is_hidden_and_names_host_and_pid(tmp_path):
    name = os.path.basename(util.temp_path(str(tmp_path / "net.pkl")))
    assert name.startswith(".net.pkl.tmp-") and name.endswith(f"-{os.getpid()}")


def test_atomic_write_replaces_the_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "net.pkl"
    target.write_bytes(b"old")
    util.atomic_write(str(target), lambda f: f.write(b"new"))
    assert target.read_bytes() == b"new"
    assert os.listdir(tmp_path) == ["net.pkl"]


def test_interrupted_atomic_write_keeps_old_file(tmp_path):
    target = tmp_path / "net.pkl"
    target.write_bytes(b"old")

    def interrupted(f):
        f.write(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        util.atomic_write(str(target), interrupted)
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["net.pkl"]


def test_atomic_output_publishes_what_a_path_writer_wrote(tmp_path):
    target = tmp_path / "stats.bin"
    with util.atomic_output(str(target)) as tmp:
        assert not os.path.exists(target)
        with open(tmp, "wb") as f:
            f.write(b"complete")
    assert target.read_bytes() == b"complete"

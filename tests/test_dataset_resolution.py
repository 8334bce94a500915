"""dataset_tool.py takes --resolution the same way in both commands: N or NxN (WxH for convert)."""

import zipfile

import pytest
from click.testing import CliRunner
from PIL import Image

import dataset_tool


def _invoke(*args):
    return CliRunner().invoke(dataset_tool.cli, [str(a) for a in args])


def _sizes(path):
    with zipfile.ZipFile(path) as z:
        return {Image.open(z.open(n)).size for n in z.namelist() if n.endswith('.png')}


def test_resolution_forms():
    assert dataset_tool.parse_resolution('256x128') == (256, 128)
    assert dataset_tool.parse_resolution(' 64 ') == (64, 64)
    assert dataset_tool.parse_square_resolution('32x32') == dataset_tool.parse_square_resolution('32') == 32
    with pytest.raises(ValueError, match='square'):
        dataset_tool.parse_square_resolution('32x64')
    with pytest.raises(ValueError, match='WxH'):
        dataset_tool.parse_resolution('big')


def test_synth_takes_nxn_and_convert_takes_n(tmp_path):
    heads = tmp_path / 'heads.zip'
    r = _invoke('synth', '--dest', heads, '--count', 2, '--resolution', '16x16', '--workers', 1)
    assert r.exit_code == 0, r.output
    assert _sizes(heads) == {(16, 16)}
    r = _invoke('--source', heads, '--dest', tmp_path / 'small.zip', '--resolution', 8)
    assert r.exit_code == 0, r.output
    assert _sizes(tmp_path / 'small.zip') == {(8, 8)}
    r = _invoke('synth', '--dest', tmp_path / 'x.zip', '--count', 2, '--resolution', '16x32', '--workers', 1)
    assert r.exit_code != 0 and 'synthetic heads are square' in r.output

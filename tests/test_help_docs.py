"""docs/*-help.txt, linked from the README, must be what the scripts print today (regenerate with
`COLUMNS=120 python <script> --help > docs/<name>-help.txt` after changing an option)."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize('script, doc', [('train.py', 'train-help.txt'), ('calc_metrics.py', 'calc-metrics-help.txt')])
def test_help_files_match_the_scripts(script, doc):
    env = dict(os.environ, COLUMNS='120')
    printed = subprocess.run([sys.executable, script, '--help'], cwd=ROOT, env=env, capture_output=True, text=True,
                             check=True).stdout
    with open(os.path.join(ROOT, 'docs', doc)) as f:
        assert f.read() == printed, f'docs/{doc} is out of date: COLUMNS=120 python {script} --help > docs/{doc}'


def test_dataset_tool_help_file_starts_with_the_scripts_help():
    env = dict(os.environ, COLUMNS='120')
    printed = subprocess.run([sys.executable, 'dataset_tool.py', '--help'], cwd=ROOT, env=env, capture_output=True,
                             text=True, check=True).stdout
    with open(os.path.join(ROOT, 'docs', 'dataset-tool-help.txt')) as f:
        assert f.read().startswith(printed)

"""torch_utils.distributed: the process-group rule train.py and calc_metrics.py share."""

import torch

from torch_utils import distributed


def test_backend_is_nccl_on_gpus_and_gloo_on_cpus():
    assert (distributed.backend("cuda"), distributed.backend("cpu")) == ("nccl", "gloo")


def test_cpu_ranks_use_the_cpu():
    assert distributed.rank_device("cpu", 3) == torch.device("cpu")


def test_torchrun_environment_gives_rank_world_and_local_rank(monkeypatch):
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert distributed.torchrun_env() == (3, 4, 1)


def test_no_torchrun_environment_means_a_local_launch(monkeypatch):
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    assert distributed.torchrun_env() is None


def test_spawned_process_joins_and_leaves_by_file(tmp_path):
    distributed.init_spawned("cpu", rank=0, world_size=1, temp_dir=str(tmp_path))
    try:
        assert torch.distributed.get_world_size() == 1 and torch.distributed.get_backend() == "gloo"
    finally:
        distributed.destroy()
    assert not torch.distributed.is_initialized()

"""Process groups for the multi-process tools (train.py, calc_metrics.py): one rule for the backend,
the rendezvous and each process's device.

- Backend: NCCL between GPUs, gloo between CPU processes.
- Rendezvous: processes that a script spawns itself meet through a file in a temporary folder the
  parent owns (no free port to find); processes started by torchrun meet through its environment
  (`env://`, RANK/WORLD_SIZE/LOCAL_RANK/MASTER_ADDR/MASTER_PORT), which also spans machines.
- Device: process `local_rank` of a machine uses cuda:<local_rank>, or the CPU.
"""

from __future__ import annotations

import os

import torch

INIT_FILE = '.torch_distributed_init'   # the rendezvous file in the spawning parent's temporary folder


def backend(device_type: str) -> str:
    """'nccl' for CUDA processes, 'gloo' otherwise."""
    return 'nccl' if device_type == 'cuda' else 'gloo'


def torchrun_env() -> tuple[int, int, int] | None:
    """(rank, world_size, local_rank) when launched by torchrun, else None."""
    if all(k in os.environ for k in ('RANK', 'WORLD_SIZE', 'LOCAL_RANK')):
        return int(os.environ['RANK']), int(os.environ['WORLD_SIZE']), int(os.environ['LOCAL_RANK'])
    return None


def init_spawned(device_type: str, rank: int, world_size: int, temp_dir: str) -> None:
    """Join the group of `world_size` processes spawned by this machine's parent (file rendezvous)."""
    init_file = os.path.abspath(os.path.join(temp_dir, INIT_FILE))
    torch.distributed.init_process_group(backend=backend(device_type), init_method=f'file://{init_file}',
                                         rank=rank, world_size=world_size)


def init_torchrun(device_type: str) -> None:
    """Join the group described by torchrun's environment variables."""
    torch.distributed.init_process_group(backend=backend(device_type), init_method='env://')


def rank_device(device_type: str, local_rank: int) -> torch.device:
    """This process's device (cuda:<local_rank> or the CPU), made current for CUDA."""
    if device_type != 'cuda':
        return torch.device('cpu')
    device = torch.device('cuda', local_rank)
    torch.cuda.set_device(device)
    return device


def destroy() -> None:
    """Leave the process group if this process joined one."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()

"""Process-group set-up for runs that ask for several tasks (DistributedDataParallel).

Inside a submitit job with more than one task, submitit's `TorchDistributedEnvironment` exports MASTER_ADDR,
MASTER_PORT, RANK, WORLD_SIZE and LOCAL_RANK; torchrun exports the same variables. Without them the run is a single
process. NCCL on CUDA, gloo on CPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def _submitit_num_tasks() -> int:
    if "SUBMITIT_EXECUTOR" not in os.environ and "SUBMITIT_FOLDER" not in os.environ:
        return 1
    try:
        import submitit

        return submitit.JobEnvironment().num_tasks
    except Exception:  # not inside a submitit job
        return 1


def init_distributed(device_type: str) -> DistInfo:
    """Join the process group when the environment describes one; return this process's place in it."""
    if "WORLD_SIZE" not in os.environ and _submitit_num_tasks() > 1:
        import submitit

        # CUDA_VISIBLE_DEVICES stays as the scheduler set it; each rank picks its device by LOCAL_RANK below.
        submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    info = DistInfo(rank=int(os.environ["RANK"]), world_size=world, local_rank=int(os.environ.get("LOCAL_RANK", 0)))
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        if device_type == "cuda":
            torch.cuda.set_device(info.local_rank % torch.cuda.device_count())
        dist.init_process_group(backend=backend, rank=info.rank, world_size=world)
    return info


def shutdown(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()

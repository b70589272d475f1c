"""Which GPUs each run of a local sweep gets.

submitit's local executor sets a job's CUDA_VISIBLE_DEVICES to `visible_gpus[:gpus_per_node]`, or to
`range(gpus_per_node)` when no `visible_gpus` are given (submitit/local/local.py, `LocalExecutor._submit_command`,
submitit 1.5). Left to itself it therefore hides every GPU from a run whose sweep sets no `gpus_per_node` (the empty
string), and gives GPU 0 to every concurrent run that asks for one. `run_local` instead asks a `GpuPool` for each run:

- the pool holds the devices this process may use: the entries of its own CUDA_VISIBLE_DEVICES when set (so a
  launcher started with `CUDA_VISIBLE_DEVICES=2,3` hands out 2 and 3), else every GPU torch counts;
- a run needs `resources.gpus_per_node` GPUs when the sweep sets it (0: the CPU, by request), else one per task on a
  machine with GPUs, none on a machine without (`gpus_needed`);
- each run gets the least-loaded devices, lowest position first, so concurrent runs spread round-robin over the
  GPUs; a GPU takes at most `runs_per_gpu` runs at once (executor.runs_per_gpu, default 1: one run per GPU), and a
  run that finds too few free devices waits for a running one to finish.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field


class GpuAllocationError(ValueError):
    """The sweep asks for GPUs this machine cannot give; the message names the key and the value."""


def visible_devices(cuda_visible: str | None, device_count: int) -> list[str]:
    """The CUDA_VISIBLE_DEVICES entries a child process may be given.

    `cuda_visible` is this process's CUDA_VISIBLE_DEVICES (None: unset) and `device_count` the number of devices
    CUDA sees through it (`torch.cuda.device_count()`). CUDA ignores the entries after the first one it cannot
    use, so only the first `device_count` entries count."""
    if cuda_visible is None:
        return [str(i) for i in range(device_count)]
    entries = [e.strip() for e in cuda_visible.split(",") if e.strip()]
    return entries[:device_count]


def detect_devices() -> list[str]:
    """`visible_devices` of this process. torch counts devices through NVML where it can, without creating a CUDA
    context in the launcher."""
    import torch

    return visible_devices(os.environ.get("CUDA_VISIBLE_DEVICES"), torch.cuda.device_count())


def gpus_needed(resources: dict, device: str, n_visible: int, where: str = "executor.resources") -> int:
    """How many GPUs one run uses: `resources.gpus_per_node` if the sweep sets it, else one per task when this
    machine has GPUs and `training.device` is not 'cpu'. Raises GpuAllocationError for a request the machine
    cannot meet (checked before anything runs)."""
    tasks = resources.get("tasks_per_node") or 1
    asked = resources.get("gpus_per_node")
    if device == "cpu":
        if asked:
            raise GpuAllocationError(f"{where}.gpus_per_node is {asked} but training.device is 'cpu'")
        return 0
    if asked is None:
        needed = tasks if n_visible else 0
    else:
        needed = asked
    if device == "cuda" and needed == 0:
        why = "resources.gpus_per_node is 0" if asked == 0 else "no CUDA device is visible to the launcher"
        raise GpuAllocationError(f"training.device is 'cuda' but {why}")
    if needed > n_visible:
        raise GpuAllocationError(f"{where}.gpus_per_node: a run needs {needed} GPU(s), this machine shows "
                                 f"{n_visible} (CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r})")
    return needed


@dataclass
class GpuPool:
    """The devices of a local sweep and how many runs each holds now."""

    devices: list[str]
    runs_per_gpu: int = 1
    load: dict[str, int] = field(default_factory=dict)

    def __post_init__(self):
        if self.runs_per_gpu < 1:
            raise GpuAllocationError(f"executor.runs_per_gpu must be >= 1, got {self.runs_per_gpu}")
        if len(set(self.devices)) != len(self.devices):
            raise GpuAllocationError(f"CUDA_VISIBLE_DEVICES names a device twice: {','.join(self.devices)}")
        self.load = {d: 0 for d in self.devices}

    def slots(self, per_run: int) -> int:
        """How many runs of `per_run` GPUs fit at once."""
        return len(self.devices) // per_run * self.runs_per_gpu if per_run else 0

    def acquire(self, n: int) -> list[str] | None:
        """`n` devices with room for one more run, least loaded first (lowest position on ties); None if fewer
        than `n` have room. `acquire(0)` is [] (a CPU run)."""
        free = sorted((self.load[d], i, d) for i, d in enumerate(self.devices) if self.load[d] < self.runs_per_gpu)
        if len(free) < n:
            return None
        chosen = [d for _, _, d in free[:n]]
        for d in chosen:
            self.load[d] += 1
        return sorted(chosen, key=self.devices.index)

    def release(self, devices: list[str]) -> None:
        for d in devices:
            if self.load.get(d, 0) <= 0:
                raise ValueError(f"release of device {d!r}, which holds no run")
            self.load[d] -= 1


def submitit_gpu_parameters(devices: list[str]) -> dict:
    """LocalExecutor parameters that give a job exactly `devices` (an empty list: no GPU, CUDA_VISIBLE_DEVICES='').
    submitit takes device indices only (`visible_gpus`, a sequence of ints)."""
    if not all(d.isdigit() for d in devices):
        raise GpuAllocationError(f"CUDA_VISIBLE_DEVICES={','.join(devices)!r} names devices by UUID; the local "
                                 "executor hands out device indices (submitit's visible_gpus): give indices")
    return {"gpus_per_node": len(devices), "visible_gpus": tuple(int(d) for d in devices)}

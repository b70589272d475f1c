"""The training batches of the coming steps, assembled on a background thread while the device runs this step.

A step's batch is a pure function of (seed, step) (the trainer's `batch_starts`), so the batches of steps s+1, s+2
can be built ahead of time without changing what is trained. Building one is host work (window starts, a gather
from the memory-mapped token array, int64 conversion); done inline it leaves the GPU idle between steps. On CUDA the
micro-batches go to page-locked (pinned) memory, so the trainer's `.to(device, non_blocking=True)` is an
asynchronous copy instead of a synchronous one from pageable memory (the pattern of torch.utils.data.DataLoader's
`pin_memory=True` and its pin-memory thread). PyTorch's caching host allocator keeps a pinned block from reuse until
the copies queued from it have finished, so each batch may be dropped as soon as its copies are queued.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import torch

from simplicial.data import windows


class BatchPrefetcher:
    """`get(step)` returns this process's micro-batches of global step `step` as (x, y) CPU tensors, pinned when
    `pin` is set, and starts building the next `depth` steps' batches on one background thread. `starts_of(step)`
    gives the global batch's window starts; `micro_slices` select this process's micro-batches from them."""

    def __init__(self, tokens: np.ndarray, seq_len: int, starts_of: Callable[[int], np.ndarray],
                 micro_slices: list[slice], total_steps: int, pin: bool, depth: int = 2):
        self.tokens, self.seq_len, self.starts_of = tokens, seq_len, starts_of
        self.micro_slices, self.total_steps, self.pin, self.depth = micro_slices, total_steps, pin, depth
        self._pending: dict[int, Future] = {}
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="batch-prefetch")

    def build(self, step: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        starts = self.starts_of(step)
        out = []
        for sl in self.micro_slices:
            x, y = windows(self.tokens, starts[sl], self.seq_len)
            out.append((x.pin_memory(), y.pin_memory()) if self.pin else (x, y))
        return out

    def get(self, step: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        for stale in [s for s in self._pending if s < step]:  # a resume or a skipped step: drop what is not needed
            self._pending.pop(stale).cancel()
        future = self._pending.pop(step, None)
        batch = future.result() if future is not None else self.build(step)
        for ahead in range(step + 1, min(step + 1 + self.depth, self.total_steps)):
            if ahead not in self._pending:
                self._pending[ahead] = self._pool.submit(self.build, ahead)
        return batch

    def close(self) -> None:
        for future in self._pending.values():
            future.cancel()
        self._pending.clear()
        self._pool.shutdown(wait=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

"""The local executor's thread budget and its ETA, both from what the runs actually cost on this machine.

Thread budget. The launcher owns `cores` CPU threads. While runs wait in the queue, each running run has its share
(cores / max_parallel). Once the queue is empty, a run that ends frees its threads and they go to the runs still
going (`share_threads`), written to each run's `threads` file, which the trainer re-reads at every log step
(`torch.set_num_threads`), so no core idles while the last runs finish. A sweep that sets `training.threads` keeps
its setting.

ETA. Runs of different architectures cost very different time per FLOP on a CPU (the 2-simplicial reference path is
several times slower per FLOP than dot-product attention at the demo's sizes), so a FLOP share of the elapsed time is
no forecast. `Throughput` measures each run's cost in core-seconds (wall seconds x the threads it held) per training
token, from the runs that finished and the progress of the running ones (counted from the first progress seen, so a
run's start-up is not read as slow training; start-up is measured apart and added once per run still to start), and
predicts every other run from the closest measured kind: the same architecture and size, else the same
architecture scaled by FLOPs per token, else any run scaled the same way. ETA = the predicted core-seconds left / the
thread budget.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field


def share_threads(cores: int, remaining: dict[str, float]) -> dict[str, int]:
    """`cores` threads over the runs in `remaining` (run id -> work left): as even as whole threads allow, the
    extra ones to the runs with the most work left; at least one each."""
    if not remaining:
        return {}
    ids = sorted(remaining, key=lambda r: -remaining[r])
    base, extra = divmod(max(cores, len(ids)), len(ids))
    return {run_id: base + (i < extra) for i, run_id in enumerate(ids)}


@dataclass
class _Clock:
    tokens: int  # the run's training tokens still to train when it started (a resumed run did some before)
    base_tokens: int  # tokens it had trained before (its checkpoint's)
    kind: tuple  # (arch, size)
    flops_per_token: float
    threads: int
    since: float  # when `threads` last changed
    core_s: float = 0.0  # core-seconds spent before `since`
    done_tokens: int = 0
    finished: bool = False
    first: tuple | None = None  # (core-seconds, tokens) at the first progress seen: start-up is before it

    def spent(self, now: float) -> float:
        return self.core_s + (0.0 if self.finished else self.threads * max(now - self.since, 0.0))

    def rate(self, now: float, overhead: float = 0.0) -> float | None:
        """Core-seconds per token: after the first progress seen (start-up, data loading and the first steps' warm-up
        excluded) once there is more; for a run that ended before a second look, its whole cost less a typical
        start-up (`overhead`); else None (one look at a running run mixes start-up into its pace)."""
        if self.first is not None and self.done_tokens > self.first[1]:
            return (self.spent(now) - self.first[0]) / (self.done_tokens - self.first[1])
        if self.finished and self.done_tokens > 0:
            return max(self.spent(now) - overhead, 0.5 * self.spent(now)) / self.done_tokens
        return None

    def overhead(self, now: float) -> float | None:
        """Core-seconds before training proper (process start, imports, data), once a pace after it is known."""
        if self.first is None or self.done_tokens <= self.first[1]:
            return None
        return max(self.first[0] - self.first[1] * self.rate(now), 0.0)


@dataclass
class Throughput:
    """Core-seconds per token, measured per run; `eta` forecasts the sweep's remaining wall time."""

    budget: int  # threads the launcher hands out at once (the machine's cores)
    clocks: dict = field(default_factory=dict)

    def start(self, run, threads: int, now: float, base_step: int = 0) -> None:
        base = min(base_step * run.training["batch_tokens"], run.tokens)
        self.clocks[run.run_id] = _Clock(run.tokens - base, base, (run.arch, run.size),
                                         run.flops / max(run.tokens, 1), threads, now)

    def set_threads(self, run_id: str, threads: int, now: float) -> None:
        c = self.clocks[run_id]
        c.core_s, c.threads, c.since = c.spent(now), threads, now

    def progress(self, run_id: str, trained_tokens: int, now: float) -> None:
        """The run has trained `trained_tokens` in all (its last logged step x batch tokens) at `now`."""
        c = self.clocks[run_id]
        c.done_tokens = min(max(trained_tokens - c.base_tokens, 0), c.tokens)
        if c.first is None and c.done_tokens > 0:
            c.first = (c.spent(now), c.done_tokens)

    def left_tokens(self, run_id: str) -> int:
        c = self.clocks[run_id]
        return 0 if c.finished else c.tokens - c.done_tokens

    def finish(self, run_id: str, now: float) -> None:
        c = self.clocks[run_id]
        c.core_s, c.since, c.finished, c.done_tokens = c.spent(now), now, True, c.tokens

    def _rates(self, now: float) -> list[tuple[tuple, float, float]]:
        """(kind, flops per token, core-seconds per token) of every run with a measured pace."""
        overhead = self.overhead(now)
        rates = [(c.kind, c.flops_per_token, c.rate(now, overhead)) for c in self.clocks.values()]
        return [r for r in rates if r[2] is not None]

    def overhead(self, now: float) -> float:
        """A run's typical core-seconds before training proper (0 until measured)."""
        known = [o for o in (c.overhead(now) for c in self.clocks.values()) if o is not None]
        return statistics.median(known) if known else 0.0

    def cost_per_token(self, kind: tuple, flops_per_token: float, now: float) -> float | None:
        rates = self._rates(now)
        same = [r for k, _, r in rates if k == kind]
        if same:
            return statistics.median(same)
        for pool in ([(f, r) for k, f, r in rates if k[0] == kind[0]], [(f, r) for _, f, r in rates]):
            if pool:  # core-seconds per FLOP of the nearest kind, times this run's FLOPs per token
                return statistics.median(r / f for f, r in pool) * flops_per_token
        return None

    def eta(self, queued: list, now: float) -> float | None:
        """Seconds until every run in `queued` and every started run is done; None before any measurement."""
        left = 0.0
        for c in self.clocks.values():
            if c.finished:
                continue
            own = c.rate(now)
            if own is not None:  # its own pace so far
                left += own * (c.tokens - c.done_tokens)
                continue
            rate = self.cost_per_token(c.kind, c.flops_per_token, now)
            if rate is None and c.done_tokens > 0:  # nothing else measured: one look, start-up included
                rate = c.spent(now) / c.done_tokens
            if rate is None:
                return None
            left += max(self.overhead(now) + c.tokens * rate - c.spent(now), (c.tokens - c.done_tokens) * rate * 0.5)
        for run in queued:
            rate = self.cost_per_token((run.arch, run.size), run.flops / max(run.tokens, 1), now)
            if rate is None:
                return None
            left += self.overhead(now) + run.tokens * rate
        return left / max(self.budget, 1)

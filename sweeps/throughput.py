"""The local executor's thread budget and its ETA, both from what the runs actually cost on this machine.

Thread budget. The launcher owns `cores` CPU threads. While runs wait in the queue, each running run has its share
(cores / max_parallel). Once the queue is empty, a run that ends frees its threads and they go to the runs still
going (`share_threads`), written to each run's `threads` file, which the trainer re-reads at every log step
(`torch.set_num_threads`), so no core idles while the last runs finish. A sweep that sets `training.threads` keeps
its setting.

ETA. Runs of different architectures cost very different time per FLOP on a CPU (the 2-simplicial reference path is
several times slower per FLOP than dot-product attention at the demo's sizes), so a FLOP share of the elapsed time is
no forecast. `Throughput` measures each run's pace in core-seconds (wall seconds x the threads it held) per training
token between two looks at its logged steps while it runs, and what a run costs beyond that (start-up, data, final
evaluation, exit: a finished run's core-seconds less tokens x pace); it predicts every other run from the closest
measured kind: the same architecture and size, else the same architecture scaled by FLOPs per token, else any run
scaled the same way. ETA = the predicted core-seconds left / the thread budget. It assumes the machine stays as busy
as it was while measured: on a shared machine whose load changes, the ETA moves with it.
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
    first: tuple | None = None  # (core-seconds, tokens) at the first look with progress: start-up is before it
    last: tuple | None = None  # (core-seconds, tokens) at the latest look while it ran

    def spent(self, now: float) -> float:
        return self.core_s + (0.0 if self.finished else self.threads * max(now - self.since, 0.0))

    def pace(self) -> float | None:
        """Core-seconds per token of training proper: between its first and latest looks while it ran (start-up
        before, final evaluation and exit after are not in it); None before two looks."""
        if self.first is None or self.last is None or self.last[1] <= self.first[1]:
            return None
        return (self.last[0] - self.first[0]) / (self.last[1] - self.first[1])

    def overhead(self) -> float | None:
        """Core-seconds of a finished run beyond tokens x pace: start-up, data, final evaluation, exit."""
        p = self.pace()
        return None if p is None or not self.finished else max(self.core_s - self.tokens * p, 0.0)


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
        if c.done_tokens > 0 and not c.finished:
            c.last = (c.spent(now), c.done_tokens)
            c.first = c.first or c.last

    def left_tokens(self, run_id: str) -> int:
        c = self.clocks[run_id]
        return 0 if c.finished else c.tokens - c.done_tokens

    def finish(self, run_id: str, now: float) -> None:
        c = self.clocks[run_id]
        c.core_s, c.since, c.finished, c.done_tokens = c.spent(now), now, True, c.tokens

    def overhead(self) -> float:
        """A run's typical core-seconds beyond its training proper (0 until a run has ended after two looks)."""
        known = [o for o in (c.overhead() for c in self.clocks.values()) if o is not None]
        return statistics.median(known) if known else 0.0

    def _rates(self, now: float) -> list[tuple[tuple, float, float]]:
        """(kind, flops per token, core-seconds per token) of every run with a measured pace: two looks, or ended
        (its whole cost less the typical overhead)."""
        overhead, rates = self.overhead(), []
        for c in self.clocks.values():
            rate = c.pace()
            if rate is None and c.finished and c.tokens > 0:
                rate = max(c.core_s - overhead, 0.5 * c.core_s) / c.tokens
            if rate is not None:
                rates.append((c.kind, c.flops_per_token, rate))
        return rates

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
        overhead, left = self.overhead(), 0.0
        for c in self.clocks.values():
            if c.finished:
                continue
            rate = c.pace() or self.cost_per_token(c.kind, c.flops_per_token, now)
            if rate is None and c.done_tokens > 0:  # nothing else measured: one look, start-up included
                rate = c.spent(now) / c.done_tokens
            if rate is None:
                return None
            # its whole expected cost less what it spent, but never less than its tokens left at its pace
            left += max(overhead + c.tokens * rate - c.spent(now), (c.tokens - c.done_tokens) * rate)
        for run in queued:
            rate = self.cost_per_token((run.arch, run.size), run.flops / max(run.tokens, 1), now)
            if rate is None:
                return None
            left += overhead + run.tokens * rate
        return left / max(self.budget, 1)

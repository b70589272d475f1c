"""Training one run of a sweep: RunSpec in, run folder out.

    python -m simplicial.train outputs/demo/runs/<run_id>/config.json     # run or resume one run in this process

The run folder (`RunSpec.run_dir`) holds `config.json` (the resolved RunSpec), `metrics.jsonl` (loss curve),
`checkpoint.pt` (model, optimizer, scheduler, step, RNG; atomic) and, written atomically last, `result.json`.
A run that finds a checkpoint resumes from it; batches are a pure function of (seed, step), so a resumed run
computes what an uninterrupted one would (bit-exact on CPU).

`TrainJob` is the submitit callable: a `Checkpointable`, so on SLURM's preemption / time-limit signal submitit calls
`checkpoint()`, which saves the current state and returns the job to requeue.
"""

from __future__ import annotations

import math
import os
import platform
import sys
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

import submitit
import torch

from simplicial.checkpoint import TrunkStore, load_checkpoint, save_checkpoint, write_json_atomic
from simplicial.counting import flops_per_token, param_counts
from simplicial.data import TokenSplits, check_length, load_eval, load_tokens, step_starts, val_batches
from simplicial.distributed import DistInfo, init_distributed, shutdown
from simplicial.model import LM
from simplicial.prefetch import BatchPrefetcher
from simplicial.tracking import open_trackers
from sweeps.grid import RunSpec
from sweeps.recipe import warmup_steps
from sweeps.snapshot import running_code

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"
RESULT = "result.json"
CONFIG = "config.json"


class Diverged(RuntimeError):
    """The training loss became NaN or infinite."""


def lr_lambda(total_steps: int, warmup_steps: int, min_ratio: float):
    """Linear warm-up to the peak, then cosine decay to min_ratio x peak at the last step of the run's budget."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


def wsd_lambda(total_steps: int, warmup_steps: int, decay_start: int, min_ratio: float):
    """Warm-up / stable / decay (Hagele et al. 2024, "Scaling Laws and Compute-Optimal Training Beyond Fixed
    Training Durations", arXiv 2405.18392; OLMo-core's WSD-S schedule): linear warm-up, the peak held until
    `decay_start`, then the 1-sqrt cool-down that paper finds best, to min_ratio x peak at the last step. Before
    `decay_start` the factor depends on the warm-up alone, so every budget of a ladder shares those steps."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        if step < decay_start:
            return 1.0
        progress = (step - decay_start) / max(1, total_steps - decay_start)
        return min_ratio + (1 - min_ratio) * (1 - math.sqrt(min(1.0, progress)))

    return factor


def resolve_device(preference: str) -> tuple[torch.device, str | None]:
    """The device to train on, and a note when `auto` falls back to the CPU (printed and kept in result.json)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if preference == "cuda" or (preference == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise RuntimeError(f"training.device is 'cuda' but no CUDA device is visible "
                               f"(CUDA_VISIBLE_DEVICES={visible!r})")
        return torch.device("cuda", torch.cuda.current_device()), None
    if preference == "auto":
        return torch.device("cpu"), (f"training.device is auto and no CUDA device is visible "
                                     f"(CUDA_VISIBLE_DEVICES={visible!r}): training on the CPU")
    return torch.device("cpu"), None


def versions(code: dict) -> dict:
    """Library versions and the commit of `code` (sweeps.snapshot.running_code(): git runs once per result)."""
    out = {"python": platform.python_version(), "torch": torch.__version__}
    try:
        import triton

        out["triton"] = triton.__version__
    except ImportError:
        out["triton"] = None
    try:
        from importlib.metadata import version

        out["simplex_scaling"] = version("simplex-scaling")
    except Exception:
        out["simplex_scaling"] = None
    out["git_commit"] = code["commit"][:12] if code["commit"] else None
    return out


class Trainer:
    """The training loop of one run, resumable. `phase` tells a signal handler whether the state is consistent."""

    def __init__(self, run: RunSpec, dist: DistInfo, device: torch.device):
        self.run, self.dist, self.device = run, dist, device
        self.run_dir = run.run_dir
        tr = run.training
        self.tr = tr
        self.cfg = run.model_config
        torch.manual_seed(run.seed)
        self.model = LM(self.cfg).to(device)
        if tr.get("compile"):
            # training.compile: each transformer block through torch.compile, in place (state-dict keys unchanged).
            # Regional compilation (PyTorch recipe "Reducing torch.compile cold start compilation time with regional
            # compilation"): the blocks of one kind share one compiled graph, so compile time does not grow with
            # depth (a dot and a 2-simplicial block: two graphs); embedding, final norm, head and loss stay eager.
            for block in self.model.blocks:
                block.compile()
        self.ddp = (torch.nn.parallel.DistributedDataParallel(self.model, device_ids=[device.index] if device.type == "cuda" else None)
                    if dist.enabled else None)
        fused = device.type == "cuda"
        self.optimizer = torch.optim.AdamW(self.model.optimizer_groups(tr["weight_decay"]), lr=tr["lr"],
                                           betas=(tr["beta1"], tr["beta2"]), fused=fused)
        self.total_steps = run.steps
        if run.trunk:
            schedule = wsd_lambda(self.total_steps, run.trunk["warmup_steps"], run.trunk["branch_step"],
                                  tr["min_lr_ratio"])
            self.trunk = TrunkStore(Path(run.sweep_dir) / "trunks" / run.trunk["id"])
        else:
            schedule = lr_lambda(self.total_steps, warmup_steps(tr, self.total_steps), tr["min_lr_ratio"])
            self.trunk = None
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, schedule)
        self.step = 0
        self.train_time_s = 0.0  # time spent in training steps, summed over all attempts
        self.phase = "idle"  # idle | accumulating | updating
        self.first_bad_step = torch.full((), -1, dtype=torch.long, device=device)
        self.n_seq = tr["batch_tokens"] // tr["seq_len"]
        micro = min(tr["micro_batch_size"], self.n_seq)
        n_micro = math.ceil(self.n_seq / micro)
        n_micro = math.ceil(n_micro / dist.world_size) * dist.world_size  # every rank gets the same count
        if n_micro > self.n_seq:
            raise ValueError(f"global batch of {self.n_seq} sequences cannot be split over {dist.world_size} processes")
        self.micro_slices = [s for s in _split(self.n_seq, n_micro)][dist.rank :: dist.world_size]
        self.autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda"
                         else torch.autocast("cpu", enabled=False))

    # -- state -------------------------------------------------------------------------------------------------

    def state(self) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "step": self.step, "train_time_s": self.train_time_s,
                "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
                "run_id": self.run.run_id}

    def restore(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step, self.train_time_s = state["step"], state["train_time_s"]
        torch.set_rng_state(state["torch_rng"])
        if state.get("cuda_rng") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])

    def save(self) -> None:
        if self.dist.is_main:
            save_checkpoint(self.run_dir / CHECKPOINT, self.state())

    def save_if_consistent(self) -> bool:
        """Called from the preemption signal handler. Between steps, or while gradients accumulate (parameters not
        yet updated), the state equals the start of step `self.step` and is saved; during the optimizer update it is
        not, and the last periodic checkpoint stands (the resumed run redoes the steps since: same batches)."""
        if self.phase == "updating":
            return False
        self.save()
        return True

    # -- loop --------------------------------------------------------------------------------------------------

    def evaluate(self, tokens) -> float:
        """Mean loss over the fixed evenly spaced windows of `tokens` (the validation split or an evaluation set)."""
        self.model.eval()
        total, count = 0.0, 0
        with torch.no_grad(), self.autocast:
            for x, y in val_batches(tokens, self.tr["seq_len"], self.tr["micro_batch_size"], self.tr["eval_tokens"]):
                _, loss = self.model(x.to(self.device), y.to(self.device))
                total += loss.float() * len(x)  # summed on the device: one sync at the end, not one per batch
                count += len(x)
        self.model.train()
        return float(total) / count

    def batch_starts(self, n_train_tokens: int, step: int):
        """Window starts of the global batch of `step`: a function of (seed, step) and the batch shape only, never
        of the architecture, size or learning rate, so runs of one seed see the same batches in the same order
        (common random numbers: comparing architectures cell by cell cancels the data order)."""
        return step_starts(n_train_tokens, self.tr["seq_len"], self.n_seq, self.run.seed, step)

    def batches(self, data: TokenSplits) -> BatchPrefetcher:
        """This process's micro-batches of each step, built ahead on a background thread (pinned on CUDA)."""
        return BatchPrefetcher(data.train, self.tr["seq_len"], lambda step: self.batch_starts(len(data.train), step),
                               self.micro_slices, self.total_steps, pin=self.device.type == "cuda")

    def train_step(self, batches: BatchPrefetcher) -> torch.Tensor:
        """One optimizer step over the global batch; returns its mean training loss as a 0-d device tensor (reading
        it is a host sync, which `fit` does only when it logs, evaluates or checkpoints)."""
        module = self.ddp or self.model
        self.phase = "accumulating"
        loss_sum = torch.zeros((), device=self.device)
        for i, (x, y) in enumerate(batches.get(self.step)):
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            weight = len(x) / self.n_seq * self.dist.world_size  # DDP averages over ranks; undo it
            sync = self.ddp is None or i == len(self.micro_slices) - 1
            ctx = self.ddp.no_sync() if not sync else _nullcontext()
            with ctx, self.autocast:
                _, loss = module(x, y)
                (loss * weight).backward()
            loss_sum += loss.detach() * len(x)
        if self.dist.enabled:
            torch.distributed.all_reduce(loss_sum)
        mean_loss = loss_sum / self.n_seq
        # the first step whose loss was not finite, kept on the device (-1: none yet); `fit` reads it at its syncs
        self.first_bad_step = torch.where((self.first_bad_step < 0) & ~torch.isfinite(mean_loss),
                                          torch.full_like(self.first_bad_step, self.step), self.first_bad_step)
        self.phase = "updating"
        if self.tr["grad_clip"] > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.tr["grad_clip"])
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        self.phase = "idle"
        return mean_loss

    def checked_loss(self, loss: torch.Tensor) -> float:
        """The host value of a step's loss (a sync); raises Diverged if any step so far had a non-finite loss."""
        value, bad = loss.item(), int(self.first_bad_step.item())
        if bad >= 0:
            raise Diverged(f"training loss is not finite at step {bad} (loss {value} at step {self.step})")
        return value

    def fit(self, data: TokenSplits, log) -> dict:
        """Train from `self.step` to the end of the budget; returns the final losses.

        The host waits for the device only at steps that log, evaluate or checkpoint (and the last): elsewhere
        steps are queued back to back. Training time is measured between those syncs, evaluation and
        checkpointing excluded."""
        tr = self.tr
        check_length(data.train, tr["seq_len"], "train")
        check_length(data.val, tr["seq_len"], "validation")
        for name, tokens in data.evals.items():
            check_length(tokens, tr["seq_len"], f"evaluation set {name!r}")
        with self.batches(data) as batches:
            if self.trunk is not None:
                self._reach_branch(data, batches, log)
            return self._fit(data, batches, log)

    def retune_threads(self) -> None:
        """Take the CPU threads the local launcher now gives this run (its `threads` file: more once the queue is
        empty and other runs have ended; sweeps/throughput.py). No file, or a GPU run: nothing changes."""
        if self.device.type != "cpu":
            return
        try:
            n = int(self.run.paths.threads.read_text())
        except (OSError, ValueError):
            return
        if n >= 1 and n != torch.get_num_threads():
            torch.set_num_threads(n)

    def _reach_branch(self, data: TokenSplits, batches: BatchPrefetcher, log) -> None:
        """A wsd run: take the shared trunk to this run's branch point. Under the trunk's lock, start from the
        furthest saved branch point at or before ours (or from our own checkpoint if it is further), train to the
        next branch point of the ladder, save it there for the other budgets, release; until ours is reached. Every
        step before a branch point is the same in every run of the ladder (same batches, same lr), so a trunk
        extended by any of them is the trunk of all."""
        branch, ladder = self.run.trunk["branch_step"], self.run.trunk.get("branch_steps") or []
        say = lambda m: print(f"[{self.run.run_id}] {m}", flush=True)  # noqa: E731
        while self.step < branch:
            with self.trunk.locked():
                saved = [s for s in self.trunk.steps() if self.step < s <= branch]
                if saved:
                    state = self.trunk.load(saved[-1], log=say)
                    if state is not None:
                        own_time = self.train_time_s
                        self.restore(state)
                        self.train_time_s = own_time
                        say(f"took the trunk at step {self.step}/{branch} (branch point)")
                        continue
                stop = min([s for s in ladder if self.step < s < branch] + [branch])
                self._fit(data, batches, log, until=stop)
                if self.dist.is_main:
                    self.trunk.save(stop, self.state())

    def _fit(self, data: TokenSplits, batches: BatchPrefetcher, log, until: int | None = None) -> dict:
        """Train to `until` (default: the end of the budget, then the final evaluation)."""
        tr, last_train = self.tr, float("nan")
        t_window = t_segment = time.perf_counter()
        tok_window = 0
        stop = self.total_steps if until is None else until
        while self.step < stop:
            loss = self.train_step(batches)
            tok_window += tr["batch_tokens"]
            step = self.step
            evaluate = bool(tr["eval_every"]) and step % tr["eval_every"] == 0
            checkpoint = step % tr["checkpoint_every"] == 0
            if not (step % tr["log_every"] == 0 or evaluate or checkpoint or step == stop):
                continue
            last_train = self.checked_loss(loss)  # waits for the queued steps
            now = time.perf_counter()
            self.train_time_s += now - t_segment
            row = None
            if step % tr["log_every"] == 0 and step < self.total_steps:
                now = time.perf_counter()
                row = {"step": step, "tokens": step * tr["batch_tokens"], "train_loss": last_train,
                       "lr": self.scheduler.get_last_lr()[0], "time_s": round(self.train_time_s, 4),
                       "tokens_per_s": tok_window / max(now - t_window, 1e-9)}
                t_window, tok_window = now, 0
            if evaluate and step < self.total_steps:
                row = row or {"step": step, "tokens": step * tr["batch_tokens"], "train_loss": last_train}
                row.update(self.evaluate_all(data))
            if row is not None:
                log(row)
            if checkpoint and step < self.total_steps:
                self.save()
            self.retune_threads()
            t_segment = time.perf_counter()
        if stop < self.total_steps:
            return {}
        losses = self.evaluate_all(data)
        log({"step": self.step, "tokens": self.step * tr["batch_tokens"], "train_loss": last_train, **losses,
             "lr": self.scheduler.get_last_lr()[0], "time_s": round(self.train_time_s, 4)})
        return {"train_loss": last_train, "val_loss": losses["val_loss"],
                "eval_losses": {name: losses[f"loss_{name}"] for name in data.evals}}

    def evaluate_all(self, data: TokenSplits) -> dict:
        """{"val_loss": ..., "loss_<name>": ...}: the validation split and every evaluation set."""
        return {"val_loss": self.evaluate(data.val), **{f"loss_{n}": self.evaluate(t) for n, t in data.evals.items()}}


def _split(n: int, parts: int) -> list[slice]:
    """`parts` contiguous slices of range(n), sizes differing by at most one."""
    bounds = [round(i * n / parts) for i in range(parts + 1)]
    return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]


class _nullcontext:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class MetricsLog:
    """Appends rows to metrics.jsonl and hands each to the run's trackers (TensorBoard, W&B: simplicial.tracking);
    on resume, drops rows past the checkpoint's step (they will be redone)."""

    def __init__(self, path: Path, resume_step: int, enabled: bool, trackers: list | None = None):
        self.path, self.enabled, self.trackers = path, enabled, list(trackers or [])
        if not enabled:
            return
        import json

        kept = []
        if path.exists() and resume_step > 0:
            for line in path.read_text().splitlines():
                try:
                    row = json.loads(line)
                except ValueError:
                    continue  # a torn last line from a killed process
                if row.get("step", 0) <= resume_step:
                    kept.append(line)
        path.write_text("".join(k + "\n" for k in kept))

    def __call__(self, row: dict) -> None:
        if self.enabled:
            import json

            with open(self.path, "a") as f:
                f.write(json.dumps(row) + "\n")
            for tracker in self.trackers:
                tracker.log(row)

    def close(self, ok: bool) -> None:
        for tracker in self.trackers:
            tracker.close(ok)
        self.trackers = []


def train_run(run: RunSpec, job: "TrainJob | None" = None) -> dict:
    """Train or resume one run; write result.json (status done, diverged or failed) and return it."""
    run_dir = run.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        device, device_note = resolve_device(run.training["device"])
    except Exception as e:  # e.g. device: cuda where none is visible: say so in result.json, not only in the log
        write_json_atomic(run.paths.result, {
            "run_id": run.run_id, "sweep": run.sweep, "arch": run.arch, "size": run.size, "seed": run.seed,
            "status": "failed", "error": traceback.format_exc(),
            "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds")})
        raise
    if device_note:
        print(f"[{run.run_id}] {device_note}", flush=True)
    dist = init_distributed(device.type)
    if device.type == "cuda" and dist.enabled:
        device = torch.device("cuda", torch.cuda.current_device())
    if device.type == "cpu" and run.training.get("threads"):
        torch.set_num_threads(int(run.training["threads"]))
    started = time.time()
    result = {"run_id": run.run_id, "sweep": run.sweep, "arch": run.arch, "size": run.size, "seed": run.seed,
              "status": "failed", "error": None, "train_loss": None, "val_loss": None,
              "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"), "device_note": device_note}
    trainer = None
    try:
        if dist.is_main:
            write_json_atomic(run_dir / CONFIG, run.to_dict())
        cache = Path(run.sweep_dir).parent / ".cache" / "data"
        data = load_tokens(run.data, cache)
        data.evals = {name: load_eval(run.data, name, ev, cache) for name, ev in run.evals.items()}
        trainer = Trainer(run, dist, device)
        if job is not None:
            job._trainer = trainer
        def checkpoint_note(message: str) -> None:  # a damaged checkpoint: said in the log and in result.json
            print(f"[{run.run_id}] {message}", flush=True)
            result.setdefault("checkpoint_notes", []).append(message)

        state = load_checkpoint(run_dir / CHECKPOINT, log=checkpoint_note)
        if state is not None and state.get("run_id") == run.run_id:
            trainer.restore(state)
            print(f"[{run.run_id}] resuming from step {trainer.step}/{trainer.total_steps}", flush=True)
        log = MetricsLog(run_dir / METRICS, trainer.step, dist.is_main,
                         open_trackers(run, trainer.step) if dist.is_main else [])
        try:
            result.update(trainer.fit(data, log))
            result["status"] = "done"
        except Diverged as e:
            result.update(status="diverged", error=str(e))
        finally:
            log.close(ok=result["status"] == "done")
        result["data"] = data.description
        result["tokenizer"] = data.tokenizer
    except Exception:
        result["error"] = traceback.format_exc()
        if dist.is_main:
            _write_result(run, result, trainer, started, device, dist)
        shutdown(dist)
        raise
    if dist.is_main:
        result = _write_result(run, result, trainer, started, device, dist)
    shutdown(dist)
    return result


def _write_result(run: RunSpec, result: dict, trainer: Trainer | None, started: float, device, dist: DistInfo) -> dict:
    counts = param_counts(run.model_config)
    per_token = flops_per_token(run.model_config)
    steps = trainer.step if trainer else 0
    tokens = steps * run.training["batch_tokens"]
    train_time = trainer.train_time_s if trainer else 0.0
    cfg = run.model_config
    code = running_code()
    result.update(
        params=counts["params_non_embedding"], params_non_embedding=counts["params_non_embedding"],
        params_with_embeddings=counts["params_with_embeddings"], tokens=tokens, flops=tokens * per_token["train"],
        flops_per_token=per_token["train"], steps=steps, wall_time_s=round(time.time() - started, 3),
        train_time_s=round(train_time, 3), tokens_per_s=tokens / train_time if train_time > 0 else None,
        n_layers=cfg.n_layers, d_model=cfg.d_model, n_heads=cfg.n_heads, simplicial_every=cfg.simplicial_every,
        w1=cfg.w1, w2=cfg.w2, seq_len=cfg.seq_len, batch_tokens=run.training["batch_tokens"],
        world_size=dist.world_size,
        device=torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({os.cpu_count()} cores)",
        versions=versions(code), code=code, finished_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    for key in ("train_loss", "val_loss"):  # JSON has no NaN
        if result.get(key) is not None and not math.isfinite(result[key]):
            result[key] = None
    if result.get("eval_losses"):
        result["eval_losses"] = {k: v if v is not None and math.isfinite(v) else None
                                 for k, v in result["eval_losses"].items()}
    write_json_atomic(run.run_dir / RESULT, result)
    return result


class TrainJob(submitit.helpers.Checkpointable):
    """The submitit callable for one run. Pickled with only the RunSpec; the live trainer is never pickled."""

    def __init__(self, run: RunSpec | dict):
        self.run = run if isinstance(run, RunSpec) else RunSpec.from_dict(run)
        self._trainer: Trainer | None = None

    def __call__(self) -> dict:
        return train_run(self.run, self)

    def checkpoint(self, *args, **kwargs) -> submitit.helpers.DelayedSubmission:
        if self._trainer is not None:
            saved = self._trainer.save_if_consistent()
            print(f"[{self.run.run_id}] preempted at step {self._trainer.step}: "
                  f"{'checkpoint saved' if saved else 'keeping the last periodic checkpoint'}", flush=True)
        return submitit.helpers.DelayedSubmission(TrainJob(self.run))

    def __getstate__(self):
        return {"run": self.run.to_dict()}

    def __setstate__(self, state):
        self.run, self._trainer = RunSpec.from_dict(state["run"]), None


def main(argv: list[str] | None = None) -> int:
    import argparse
    import json

    p = argparse.ArgumentParser(prog="python -m simplicial.train",
                                description="Run or resume one run of a sweep in this process (its run folder's "
                                            "config.json, written by the launcher); prints its final losses.")
    p.add_argument("config", help="RUN_DIR/config.json: the resolved RunSpec of the run")
    args = p.parse_args(argv)
    try:
        run = RunSpec.from_dict(json.loads(Path(args.config).read_text()))
    except OSError as e:
        p.error(f"{args.config}: cannot read ({e.strerror})")
    except (ValueError, TypeError) as e:  # not JSON, or not a RunSpec's keys
        p.error(f"{args.config}: not a run's config.json ({e})")
    result = train_run(run)
    print(json.dumps({k: result[k] for k in ("run_id", "status", "train_loss", "val_loss")}))
    return 0 if result["status"] == "done" else 1


if __name__ == "__main__":
    sys.exit(main())

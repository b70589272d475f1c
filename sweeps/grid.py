"""Grid expansion: a SweepSpec becomes a list of frozen RunSpecs, each with a stable id.

A run id is a readable prefix (architecture, size, tokens, seed) plus a hash of the canonical resolved config
(model shape, budget, training recipe, data): the same config gives the same id on any machine, and a changed
recipe gives a new id, so finished runs are never mistaken for runs of another experiment. Settings that do not
change what is computed (executor, resources, thread count, logging and checkpoint cadence) are not hashed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

from simplicial.counting import flops_per_token, param_counts
from simplicial.config import ModelConfig
from simplicial.sizes import shape_for_params
from sweeps.paths import RunPaths
from sweeps.spec import ResourceSpec, SweepError, SweepSpec

# TrainingSpec / DataSpec fields that do not change the trained model (excluded from the run id)
_NOT_IDENTITY = {"threads", "device", "compile", "log_every", "checkpoint_every", "cache_dir", "max_epochs"}
# recipe definitions: the values they resolve to (lr, batch_tokens) are in the identity, so a rule that yields the
# lr one would write by hand gives the same run; lr_tuning_seeds says which runs train, not what a run is
_NOT_IDENTITY |= {"scaling_rule", "lr_multipliers", "lr_tuning_seeds"}


@dataclass(frozen=True)
class RunSpec:
    """Everything one training run needs, resolved. `to_dict()` is what `config.json` holds."""

    run_id: str
    sweep: str
    arch: str
    size: str
    seed: int
    model: dict  # ModelConfig fields
    tokens: int  # training tokens (a whole number of global batches)
    budget: dict  # {"tokens": D} or {"flops": C}: the grid point this run came from
    training: dict  # TrainingSpec fields
    data: dict  # DataSpec fields
    sweep_dir: str
    resources: dict  # ResourceSpec fields (not part of the id)
    executor: str = "local"
    lr_mult: float = 1.0  # this run's multiple of its cell's resolved lr (the LR axis); training["lr"] includes it
    # name -> EvalSpec fields: evaluation sets scored at the end and every eval_every steps. Not part of the id:
    # adding a set does not retrain finished runs (they have no loss for it; a new run of the grid will)
    evals: dict = dataclasses.field(default_factory=dict)
    tracking: dict = dataclasses.field(default_factory=dict)  # TrackingSpec fields (not part of the id)
    # schedule wsd: {"id", "warmup_steps", "branch_step"}: the stable trunk this run branches off (shared by every
    # budget of its (arch, size, lr, seed) ladder, saved under <sweep_dir>/trunks/<id>/) and the step it leaves it
    trunk: dict | None = None

    @property
    def model_config(self) -> ModelConfig:
        return ModelConfig(**self.model)

    @property
    def run_dir(self) -> Path:
        return Path(self.sweep_dir) / "runs" / self.run_id

    @property
    def tuned_axis(self) -> bool:
        """Its cell sweeps the lr (more than one multiplier) and `lr_tuning_seeds` tunes it on some seeds."""
        return bool(self.training.get("lr_tuning_seeds")) and len(self.training.get("lr_multipliers", [1.0])) > 1

    @property
    def lr_replicate(self) -> bool:
        """A run of a seed that trains only the multiplier its cell's tuning seeds pick (sweeps/state.py tune_lr):
        before the tuning, one of len(lr_multipliers) such runs of its (arch, size, budget, seed) will train."""
        return self.tuned_axis and self.seed not in self.training["lr_tuning_seeds"]

    @property
    def paths(self) -> RunPaths:
        return RunPaths(self.run_dir)

    @property
    def steps(self) -> int:
        return self.tokens // self.training["batch_tokens"]

    @property
    def params(self) -> dict[str, int]:
        return param_counts(self.model_config)

    @property
    def flops(self) -> float:
        return self.tokens * flops_per_token(self.model_config)["train"]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "RunSpec":
        return cls(**d)


def _canonical(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def _short_number(x: float) -> str:
    """1500000 -> '1.5M': a readable budget in run ids."""
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if x >= scale:
            return f"{x / scale:.3g}{unit}"
    return f"{x:.3g}"


def run_id_for(identity: dict, arch: str, size: str, tokens: int, seed: int, lr_mult: float | None = None) -> str:
    """`lr_mult` (given when the cell sweeps the learning rate) adds e.g. '-lr0.5x' to the readable prefix."""
    digest = hashlib.sha256(_canonical(identity).encode()).hexdigest()[:10]
    lr = f"-lr{lr_mult:g}x" if lr_mult is not None else ""
    return f"{arch}-{size}-{_short_number(tokens)}tok{lr}-s{seed}-{digest}"


def simplicial_blocks(cfg: ModelConfig) -> int:
    """How many blocks of `cfg` are 2-simplicial (ModelConfig.is_simplicial decides)."""
    return sum(cfg.is_simplicial(layer) for layer in range(cfg.n_layers))


def check_shapes(spec: SweepSpec) -> None:
    """Refuse grids whose comparison would be meaningless, naming the key: a `params` size the shape family cannot
    reach within the size's tolerance, and a simplicial architecture that has no 2-simplicial block at some size
    (it would be the dot-product model under another name)."""
    for size_name, size in spec.sizes.items():
        if size.params is None:
            continue
        cfg = model_config_for(spec, next(iter(spec.architectures)), size_name)
        achieved = param_counts(dataclasses.replace(cfg, arch="dot"))["params_non_embedding"]
        if abs(achieved / size.params - 1) > size.tolerance:
            raise SweepError(spec.source_path, f"sizes.{size_name}.params",
                             f"target {size.params:,.0f} is not reachable by the shape family within "
                             f"tolerance {size.tolerance:g}: its nearest member ({cfg.n_layers}x{cfg.d_model}, "
                             f"{cfg.n_heads} heads) has {achieved:,} non-embedding parameters "
                             f"({achieved / size.params - 1:+.0%}); {_family_neighbours(spec, size.params)}; "
                             f"give a reachable target, an explicit shape, or a larger sizes.{size_name}.tolerance")
    for arch_name, arch in spec.architectures.items():
        if arch.type != "simplicial":
            continue
        for size_name in spec.sizes:
            cfg = model_config_for(spec, arch_name, size_name)
            if simplicial_blocks(cfg) == 0:
                raise SweepError(spec.source_path, f"architectures.{arch_name}.every",
                                 f"every={arch.every} gives size {size_name!r} ({cfg.n_layers} layers) no "
                                 f"2-simplicial block, so it would train the dot-product model; use every <= "
                                 f"{cfg.n_layers} or sizes with at least {arch.every} layers")


def _family_neighbours(spec: SweepSpec, target: float) -> str:
    from simplicial.sizes import family_shape

    base = ModelConfig(vocab_size=spec.data.vocab_size, seq_len=spec.training.seq_len)
    counts = []
    for n_layers in range(1, 65):
        L, d, H = family_shape(n_layers)
        counts.append(param_counts(dataclasses.replace(base, n_layers=L, d_model=d, n_heads=H))["params_non_embedding"])
    below = [c for c in counts if c <= target][-1:]
    above = [c for c in counts if c > target][:1]
    return "reachable counts nearby: " + ", ".join(f"{c:,}" for c in below + above)


def model_config_for(spec: SweepSpec, arch_name: str, size_name: str) -> ModelConfig:
    arch, size, tr = spec.architectures[arch_name], spec.sizes[size_name], spec.training
    base = ModelConfig(vocab_size=spec.data.vocab_size, seq_len=tr.seq_len, tie_embeddings=tr.tie_embeddings)
    if size.params is not None:
        try:
            n_layers, d_model, n_heads = shape_for_params(size.params, base)
        except ValueError as e:
            raise SweepError(spec.source_path, f"sizes.{size_name}.params", str(e)) from None
        n_kv = None
    else:
        n_layers, d_model, n_heads, n_kv = size.n_layers, size.d_model, size.n_heads, size.n_kv_heads
    return dataclasses.replace(
        base, n_layers=n_layers, d_model=d_model, n_heads=n_heads, n_kv_heads=n_kv, arch=arch.type,
        simplicial_every=arch.every, w1=arch.w1, w2=arch.w2, attn_backend=arch.attn_backend)


def resources_for(spec: SweepSpec, arch: str, size: str) -> ResourceSpec:
    """executor.resources, then per_arch[arch], then per_size[size]: the most specific setting wins."""
    res = spec.executor.resources
    if arch in spec.executor.per_arch:
        res = res.merged(spec.executor.per_arch[arch])
    if size in spec.executor.per_size:
        res = res.merged(spec.executor.per_size[size])
    return res


def _check_budget(spec: SweepSpec, kind: str, i: int, value: float, target: float, tokens: int,
                  trained: dict[int, int], arch: str, size: str, batch: int) -> None:
    """A budget is trained in whole global batches; refuse budgets that rounding would distort: one below a single
    batch (it would train a full batch, more than asked) and two that round to the same token count (the same run
    twice under two ids, double-counted by the fit)."""
    where = f"for {arch}/{size}, " if kind == "flops" else ""
    if target < batch:
        raise SweepError(spec.source_path, f"budgets.{kind}[{i}]",
                         f"{value:.4g} is {where}{target:.4g} tokens, under one global batch (training.batch_tokens="
                         f"{batch}); lower batch_tokens or raise the budget")
    if tokens in trained:
        j = trained[tokens]
        raise SweepError(spec.source_path, f"budgets.{kind}[{i}]",
                         f"{value:.6g} trains {where}the same {tokens} tokens as budgets.{kind}[{j}]="
                         f"{getattr(spec.budgets, kind)[j]:.6g} (budgets are rounded up to whole batches of "
                         f"training.batch_tokens={batch}); make the budgets further apart")


def expand(spec: SweepSpec) -> list[RunSpec]:
    """All runs of the grid, in a stable order (architecture, size, budget, lr multiplier, seed as written)."""
    from sweeps.recipe import cell_compute, resolve, wsd_branch_step

    from simplicial.data import DataError, data_fingerprint

    data = dataclasses.asdict(spec.data)
    try:
        # the corpus's content is part of each run's identity: edit the data and the runs are new ones
        data["fingerprint"] = data_fingerprint(data)["sha256"]
    except (DataError, OSError) as e:
        raise SweepError(spec.source_path, getattr(e, "key", None) or "data", getattr(e, "reason", None) or str(e))
    kind = "tokens" if spec.budgets.tokens else "flops"
    budgets = [{kind: float(b)} for b in getattr(spec.budgets, kind)]
    cfgs = {(a, z): model_config_for(spec, a, z) for a in spec.architectures for z in spec.sizes}
    targets_of = {key: [b.get("tokens") or b["flops"] / flops_per_token(cfg)["train"] for b in budgets]
                  for key, cfg in cfgs.items()}  # the tokens each budget asks of each (arch, size)
    # the scaling rule's compute, one per (size, budget) for all architectures
    computes = {(z, i): cell_compute(spec, z, i, cfgs, targets_of) for z in spec.sizes for i in range(len(budgets))}
    runs = []
    for arch in spec.architectures:
        for size in spec.sizes:
            cfg = cfgs[arch, size]
            trained: dict[int, int] = {}  # tokens -> index of the budget that trains them
            targets = targets_of[arch, size]
            warmup = None
            for i, budget in enumerate(budgets):
                target = targets[i]
                recipe = resolve(spec, arch, size, computes[size, i])
                batch = recipe.batch_tokens
                tokens = max(1, math.ceil(target / batch)) * batch  # whole global batches
                _check_budget(spec, kind, i, budget[kind], target, tokens, trained, arch, size, batch)
                trained[tokens] = i
                if recipe.schedule == "wsd" and warmup is None:  # one warm-up for the ladder: the shortest run's
                    ladder = [max(1, math.ceil(t / batch)) for t in targets]
                    warmup = _ladder_warmup(spec, recipe, ladder, arch, size)
                    branches = sorted({wsd_branch_step(dataclasses.asdict(recipe), n) for n in ladder})
                axis = recipe.lr_multipliers != [1.0]
                for mult in recipe.lr_multipliers:
                    for seed in spec.seeds:
                        tr = {**dataclasses.asdict(recipe), "seed": seed, "lr": recipe.lr * mult}
                        hashed = {k: v for k, v in tr.items() if k not in _NOT_IDENTITY}
                        if recipe.schedule == "cosine":  # the default: ids of sweeps that predate wsd stay
                            hashed = {k: v for k, v in hashed.items() if k not in ("schedule", "decay_fraction")}
                        identity = {
                            "model": cfg.to_dict(), "tokens": tokens, "budget": budget, "training": hashed,
                            "data": {k: v for k, v in data.items() if k not in _NOT_IDENTITY},
                        }
                        trunk = None
                        if recipe.schedule == "wsd":
                            trunk = _trunk(identity, warmup, wsd_branch_step(tr, tokens // batch), arch, size, seed)
                            trunk["branch_steps"] = branches  # where the ladder's runs save the trunk
                            identity["trunk"] = {k: trunk[k] for k in ("warmup_steps", "branch_step")}
                        runs.append(RunSpec(
                            run_id=run_id_for(identity, arch, size, tokens, seed, mult if axis else None),
                            sweep=spec.name, arch=arch, size=size, seed=seed, model=cfg.to_dict(), tokens=tokens,
                            budget=budget, training=tr, data=data, sweep_dir=str(spec.sweep_dir),
                            resources=dataclasses.asdict(resources_for(spec, arch, size)),
                            executor=spec.executor.name, lr_mult=float(mult),
                            evals={n: dataclasses.asdict(e) for n, e in spec.evals.items()},
                            tracking=dataclasses.asdict(spec.tracking), trunk=trunk))
    ids = [r.run_id for r in runs]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise ValueError(f"sweep {spec.name!r} expands to duplicate runs (same config twice): {dup[:3]}")
    return runs


def _ladder_warmup(spec: SweepSpec, recipe, steps: list[int], arch: str, size: str) -> int:
    """The warm-up of a wsd ladder: warmup_fraction of its shortest run, which must still decay after it."""
    from sweeps.recipe import warmup_steps, wsd_branch_step

    tr = dataclasses.asdict(recipe)
    warmup = warmup_steps(tr, min(steps))
    if wsd_branch_step(tr, min(steps)) < warmup:
        raise SweepError(spec.source_path, "training.decay_fraction",
                         f"for {arch}/{size}, the shortest run ({min(steps)} steps) would start its decay (step "
                         f"{wsd_branch_step(tr, min(steps))}) before its warm-up ends (step {warmup}); lower "
                         f"decay_fraction or warmup_fraction, or raise the smallest budget")
    return warmup


def _trunk(identity: dict, warmup: int, branch_step: int, arch: str, size: str, seed: int) -> dict:
    """The stable trunk of a wsd run: identified by everything that shapes steps before any decay (model, data,
    recipe, lr, seed, warm-up), not by the budget, so every budget of a ladder (and one added later) shares it."""
    shared = {"model": identity["model"], "data": identity["data"], "warmup_steps": warmup,
              "training": {k: v for k, v in identity["training"].items()
                           if k not in ("decay_fraction", "min_lr_ratio")}}
    digest = hashlib.sha256(_canonical(shared).encode()).hexdigest()[:10]
    return {"id": f"{arch}-{size}-s{seed}-{digest}", "warmup_steps": warmup, "branch_step": branch_step}


def trained_flops(runs: list[RunSpec]) -> float:
    """Training FLOPs the runs spend: a wsd trunk once (to its furthest branch point), then each run's own decay;
    a cosine run its whole budget."""
    trunks: dict[str, float] = {}
    total = 0.0
    for r in runs:
        per_step = r.flops / r.steps
        if r.trunk is None:
            total += r.flops
            continue
        total += (r.steps - r.trunk["branch_step"]) * per_step
        trunks[r.trunk["id"]] = max(trunks.get(r.trunk["id"], 0.0), r.trunk["branch_step"] * per_step)
    return total + sum(trunks.values())


def data_epochs(spec: SweepSpec, runs: list[RunSpec]) -> list[float | None]:
    """Passes each run makes over the unique training tokens (its tokens / the train split's tokens); None where
    the count is not known before the data cache is built (a BPE corpus)."""
    from simplicial.data import train_token_count

    data = runs[0].data if runs else dataclasses.asdict(spec.data)  # with the corpus digest expand computed
    unique = train_token_count(data, spec.output_root / ".cache" / "data")
    return [r.tokens / unique if unique else None for r in runs]


def check_epochs(spec: SweepSpec, runs: list[RunSpec], epochs: list[float | None]) -> list[str]:
    """Refuse (SweepError on data.max_epochs) a run that would repeat its data more than data.max_epochs times;
    return a warning line for each run above one epoch."""
    over = [(r, e) for r, e in zip(runs, epochs) if e is not None and e > spec.data.max_epochs]
    if over:
        run, e = max(over, key=lambda x: x[1])
        raise SweepError(spec.source_path, "data.max_epochs",
                         f"{len(over)} run(s) would repeat the training data more than max_epochs="
                         f"{spec.data.max_epochs:g} times, up to {e:.2f} epochs ({run.run_id}: {run.tokens:,} "
                         f"tokens); give more data (data.max_bytes), smaller budgets, or a larger data.max_epochs")
    return [f"warning: {r.run_id} passes over its unique training tokens {e:.2f} times (> 1 epoch)"
            for r, e in zip(runs, epochs) if e is not None and e > 1]


def check_cells(runs: list[RunSpec]) -> list[str]:
    """A warning for each size whose architectures do not train alike at a budget: a different batch (then a seed's
    batches and the number of optimizer steps differ between them, and the comparison is no longer paired) or,
    without an lr axis to tune it, a different peak lr. The scaling rule gives a cell one recipe; explicit per-
    architecture `lr` or `batch_tokens` can split it, which is allowed but must not pass unseen."""
    cells: dict[tuple, dict[str, tuple]] = {}
    for r in runs:
        key = (r.size, json.dumps(r.budget, sort_keys=True), r.lr_mult)
        axis = list(r.training.get("lr_multipliers", [1.0])) != [1.0]
        cells.setdefault(key, {})[r.arch] = (r.training["batch_tokens"], r.training["lr"], axis)
    out, seen = [], set()
    for (size, budget, _), archs in cells.items():
        if len(archs) < 2 or size in seen:
            continue
        batches = {a: v[0] for a, v in archs.items()}
        lrs = {a: v[1] for a, v in archs.items() if not v[2]}
        what = []
        if len(set(batches.values())) > 1:
            what.append(f"batch_tokens {batches} (different batches and step counts per seed)")
        if len(set(lrs.values())) > 1:
            what.append(f"lr {lrs} (no lr axis at this size to tune it)")
        if what:
            seen.add(size)
            out.append(f"warning: size {size}, budget {budget}: the architectures train unlike: {'; '.join(what)}")
    return out


# check_steps: a budget whose sizes take optimizer steps this far apart, with the fewest under FEW_STEPS, is named
STEP_SPREAD = 2.0
FEW_STEPS = 2000


def check_steps(runs: list[RunSpec]) -> list[str]:
    """A warning for each (architecture, budget) whose sizes take optimizer steps more than STEP_SPREAD-fold apart,
    the fewest under FEW_STEPS: a batch that grows with the model (the scaling rule's does) gives the larger sizes
    fewer updates at the same tokens, and in runs this short the loss can reflect the step count more than the size.
    The H100 pilot of studies/dot-vs-simplicial-h100 took 652 steps at its largest size and 2,069 at its smallest
    at 36M tokens, and its loss rose with N (fitting.identify.rising flags that after the fact)."""
    cells: dict[tuple, dict[str, int]] = {}
    for r in runs:
        cells.setdefault((r.arch, json.dumps(r.budget, sort_keys=True)), {})[r.size] = r.steps
    out = []
    for (arch, budget), steps in cells.items():
        lo, hi = min(steps.values()), max(steps.values())
        if hi > STEP_SPREAD * lo and lo < FEW_STEPS:
            few = min(steps, key=steps.get)
            out.append(f"warning: {arch}, budget {budget}: size {few} takes {lo:,} optimizer steps, "
                       f"{max(steps, key=steps.get)} {hi:,}: in runs this short the loss can follow the step count "
                       f"more than the size (give the sizes one batch_tokens)")
    return out

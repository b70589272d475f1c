"""Each run's training recipe, resolved: the sweep's `training`, then the architecture's, then the size's overrides
(the most specific wins), then an optional scaling rule for the peak learning rate and the batch, then the
learning-rate multiplier of the grid's LR axis.

The rule (`training.scaling_rule`):

- `deepseek-llm`: DeepSeek-AI 2024, "DeepSeek LLM: Scaling Open-Source Language Models with Longtermism" (arXiv
  2401.02954, section 3.1), fitted the near-optimal peak learning rate and batch size of AdamW runs with warm-up and
  a decaying schedule as power laws of the compute budget C = M * D, with M the non-embedding training FLOPs per
  token (attention included) and D the training tokens:

      lr_opt = 0.3118 * C ** -0.1250        B_opt = 0.2920 * C ** 0.3271   (B in tokens)

  Why this rule: it gives both the learning rate and the batch from one published fit, as a function of compute
  with attention's FLOPs in M.

  One cell, one recipe: the rule is evaluated once per (size, budget) cell, at the least compute among the sweep's
  architectures at that size (the dot-product model's, when there is one; `cell_compute`), and every architecture
  of the cell trains with that lr and batch. Evaluated per architecture, the 2-simplicial model's larger M gave it
  a larger batch at the same tokens, hence fewer optimizer steps (27% fewer at 3M parameters and 36M tokens in the
  pilot of studies/dot-vs-simplicial-h100), and a seed's batches were no longer the same in both architectures:
  in the short runs of a scaling grid, where loss still falls steeply at the end, the architecture with fewer steps
  loses by a margin that is the recipe's, not the attention's. The lr axis (`lr_multipliers`) then tunes the lr
  per architecture and size around the shared value. OLMo-core's ladder configurators scale by
  parameter count and were tuned for its own architecture and data. The fit was made on runs of 1e17 FLOPs and
  more, far above a CPU ladder's 1e10-1e13: there it is an extrapolation, which is why `lr_multipliers` exists (sweep
  a few multiples of the rule's lr, and the report flags a cell whose best lr sits at the edge of the range).
  The batch is rounded to whole sequences (at least one).

An `lr` or `batch_tokens` written under an architecture or a size wins over the rule.
"""

from __future__ import annotations

import dataclasses

from simplicial.counting import flops_per_token
from simplicial.config import ModelConfig
from sweeps.spec import SweepError, SweepSpec, TrainingSpec

RULES = ("none", "deepseek-llm")


DEEPSEEK_LR = (0.3118, -0.1250)  # lr_opt = 0.3118 C^-0.1250
DEEPSEEK_BATCH = (0.2920, 0.3271)  # B_opt = 0.2920 C^0.3271 tokens


def deepseek_llm(compute: float) -> tuple[float, float]:
    """(peak lr, batch in tokens) of DeepSeek LLM's fits for compute C = M * D (arXiv 2401.02954, section 3.1)."""
    (a, p), (b, q) = DEEPSEEK_LR, DEEPSEEK_BATCH
    return a * compute ** p, b * compute ** q


def deepseek_llm_compute(lr: float) -> float:
    """The compute at which `deepseek_llm` gives peak lr `lr` (its inverse in lr)."""
    a, p = DEEPSEEK_LR
    return (lr / a) ** (1.0 / p)


def rule_compute(cfg: ModelConfig, tokens: float) -> float:
    """DeepSeek's C = M * D: M the training FLOPs per token without the vocabulary projection (the output head;
    the input embedding is a lookup), attention included."""
    return (flops_per_token(cfg)["train"] - 6.0 * cfg.d_model * cfg.vocab_size) * tokens


def training_for(spec: SweepSpec, arch: str, size: str) -> TrainingSpec:
    """The sweep's training with the architecture's, then the size's overrides (the rule not yet applied)."""
    return dataclasses.replace(spec.training, **{**spec.architectures[arch].training, **spec.sizes[size].training})


def explicit(spec: SweepSpec, arch: str, size: str) -> set[str]:
    """Keys set under the architecture or the size (they win over the rule)."""
    return set(spec.architectures[arch].training) | set(spec.sizes[size].training)


def check_recipes(spec: SweepSpec) -> None:
    """Every (architecture, size) recipe must itself be valid; errors name the most specific section involved."""
    for arch, a in spec.architectures.items():  # each override on its own first, so an error names its section
        dataclasses.replace(spec.training, **a.training).check(f"architectures.{arch}.training")
    for size, z in spec.sizes.items():
        dataclasses.replace(spec.training, **z.training).check(f"sizes.{size}.training")
    for arch in spec.architectures:
        for size in spec.sizes:
            key = f"sizes.{size}.training (with architectures.{arch}.training)"
            tr = training_for(spec, arch, size)
            tr.check(key)
            if tr.schedule == "wsd":
                from sweeps.grid import resources_for

                tasks = resources_for(spec, arch, size).tasks_per_node or 1
                if tasks > 1:
                    raise SweepError(spec.source_path, "training.schedule",
                                     f"wsd trunks are shared by single-process runs only; {arch}/{size} runs "
                                     f"{tasks} processes (executor tasks_per_node): use cosine there")


def rule_tokens(spec: SweepSpec, arch: str, size: str, targets: list[float], i: int) -> float:
    """The tokens the rule is evaluated at for budget `i` of an (arch, size) ladder whose budgets train `targets`
    tokens: that budget's, or with the wsd schedule, whose budgets share one trunk and hence one lr and batch, the
    ladder's largest."""
    return max(targets) if training_for(spec, arch, size).schedule == "wsd" else targets[i]


def cell_compute(spec: SweepSpec, size: str, i: int, cfgs: dict[tuple[str, str], ModelConfig],
                 targets: dict[tuple[str, str], list[float]]) -> float:
    """The rule's compute for budget `i` of size `size`, shared by every architecture (see the module docstring):
    the least of the architectures' C = M * D. `cfgs` and `targets` (the tokens each budget asks) are keyed by
    (arch, size): with FLOP budgets the tokens differ between architectures, with token budgets they are the same."""
    return min(rule_compute(cfgs[a, size], rule_tokens(spec, a, size, targets[a, size], i)) for a in spec.architectures)


def resolve(spec: SweepSpec, arch: str, size: str, compute: float) -> TrainingSpec:
    """The recipe of the runs of one (arch, size, budget) cell before the LR axis: overrides, then the rule at
    `compute` (cell_compute)."""
    tr = training_for(spec, arch, size)
    if tr.scaling_rule == "none":
        return tr
    lr, batch = deepseek_llm(compute)
    given = explicit(spec, arch, size)
    values = {}
    if "lr" not in given:
        values["lr"] = float(f"{lr:.4g}")
    if "batch_tokens" not in given:
        values["batch_tokens"] = max(1, round(batch / tr.seq_len)) * tr.seq_len
    return dataclasses.replace(tr, **values)


# check_rule_batch: an explicit batch this many times off the rule's own batch, with the rule's lr and no lr axis
RULE_BATCH_RATIO = 1.5


def check_rule_batch(spec: SweepSpec, runs: list) -> list[str]:
    """A warning for each (arch, size) that trains at the rule's lr but at an explicit batch_tokens more than
    RULE_BATCH_RATIO-fold from the rule's own batch for that compute, with no lr axis to correct it. DeepSeek LLM
    fitted its lr together with its batch; for Adam the optimal lr scales about as the square root of the batch
    (Malladi et al. 2022, "On the SDEs and Scaling Rules for Adaptive Gradient Algorithms", NeurIPS, arXiv
    2205.10287), so the rule's lr is then about sqrt(batch / rule batch) times off. In the H100 study
    (studies/dot-vs-simplicial-h100, the second pilot) a fixed 16k batch at the rule's lr made the loss rise with N:
    0.54x the rule's lr was predicted at the largest size, and 0.5x won there."""
    out, seen = [], set()
    for r in runs:
        tr = training_for(spec, r.arch, r.size)
        given = explicit(spec, r.arch, r.size)
        if ((r.arch, r.size) in seen or tr.scaling_rule == "none" or "lr" in given or "batch_tokens" not in given
                or len(tr.lr_multipliers) > 1):
            continue
        compute = deepseek_llm_compute(r.training["lr"] / r.lr_mult)  # the cell's compute, from its rule lr
        batch, rule_batch = r.training["batch_tokens"], deepseek_llm(compute)[1]
        if max(batch / rule_batch, rule_batch / batch) > RULE_BATCH_RATIO:
            seen.add((r.arch, r.size))
            out.append(f"warning: {r.arch}/{r.size}: the {tr.scaling_rule} lr {r.training['lr']:.3g} goes with a "
                       f"batch of about {rule_batch:,.0f} tokens, but this size trains at {batch:,}; by Adam's "
                       f"square-root rule its best lr is near {(batch / rule_batch) ** 0.5:.2f}x the rule's (add "
                       f"lr_multipliers around that, or set lr)")
    return out


def warmup_steps(training: dict, steps: int) -> int:
    """Linear warm-up length of a run of `steps` steps (at least one step)."""
    return max(1, int(training["warmup_fraction"] * steps))


def wsd_branch_step(training: dict, steps: int) -> int:
    """Where a wsd run of `steps` steps leaves the stable trunk: its last decay_fraction of steps (at least one)
    decay. Hagele et al. 2024 find a 1-sqrt cool-down over about 20% of the steps matches a cosine run's loss."""
    return steps - max(1, round(training["decay_fraction"] * steps))


def describe(training: dict, steps: int, trunk: dict | None = None) -> dict[str, str]:
    """The dry run's recipe columns for one run: lr, batch, warm-up steps, schedule."""
    if trunk:
        warmup = trunk["warmup_steps"]
        schedule = (f"wsd: 1-sqrt to {training['min_lr_ratio']:g}x from step {trunk['branch_step']}/{steps}, "
                    f"trunk {trunk['id'].rsplit('-', 1)[-1][:8]}")
    else:
        warmup, schedule = warmup_steps(training, steps), f"cosine to {training['min_lr_ratio']:g}x"
    return {"lr": f"{training['lr']:.3g}", "batch": f"{training['batch_tokens']:,}", "warmup": str(warmup),
            "schedule": schedule}

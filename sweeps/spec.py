"""The sweep specification: a typed, validated view of a sweep YAML.

A sweep names a grid (architectures x model sizes x token or FLOP budgets) plus the data, training recipe and
executor every run shares. Everything is checked on load, before anything is submitted: an unknown key, a wrong type
or an impossible value raises `SweepError` with the file, the key path and the reason.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class SweepError(ValueError):
    """A sweep file that cannot be run as written; the message names file, key path and value."""

    def __init__(self, path: str, key: str, reason: str):
        self.path, self.key, self.reason = path, key, reason
        where = f"{path}: " if path else ""
        super().__init__(f"{where}{key}: {reason}")


# The largest budget a sweep may name. Llama 3 405B, among the largest published runs, trained on 15.6e12 tokens with
# 3.8e25 FLOPs (Dubey et al. 2024, "The Llama 3 Herd of Models", section 3.2.1); these caps leave ~60x headroom above
# that and catch exponent typos (1e30) before they become an astronomically long job.
MAX_BUDGET = {"tokens": 1e15, "flops": 1e28}
MAX_SEED = 2**63 - 1  # torch.manual_seed and numpy's SeedSequence both take seeds in [0, 2^63 - 1]

# ----------------------------------------------------------------------------------------------------------------
# Sections. Field types are simple (str, int, float, bool, list, dict, Optional) so the loader can check them.


@dataclass(frozen=True)
class ArchSpec:
    """One architecture of the comparison. `type: dot` is dot-product attention everywhere; `type: simplicial`
    makes every `every`-th block (blocks every-1, 2*every-1, ...) sliding-window 2-simplicial attention."""

    type: str = "dot"
    every: int = 4  # the paper's choice (docs/REFERENCE.md section 1)
    w1: int = 512  # (w1, w2) = (512, 32) in the paper
    w2: int = 32
    attn_backend: str = "auto"  # "auto": Triton on CUDA, exact chunked PyTorch otherwise
    training: dict = field(default_factory=dict)  # `training` settings for this architecture (sizes' win over them)

    def check(self, key: str) -> None:
        if self.type not in ("dot", "simplicial"):
            raise SweepError("", f"{key}.type", f"must be 'dot' or 'simplicial', got {self.type!r}")
        for name in ("every", "w1", "w2"):
            if getattr(self, name) <= 0:
                raise SweepError("", f"{key}.{name}", f"must be >= 1, got {getattr(self, name)}")
        if self.attn_backend not in ("auto", "triton", "torch"):
            raise SweepError("", f"{key}.attn_backend", f"must be auto, triton or torch, got {self.attn_backend!r}")


@dataclass(frozen=True)
class SizeSpec:
    """A model size: an explicit shape (n_layers, d_model, n_heads) or a target non-embedding parameter count
    (`params`) from which `simplicial.sizes.shape_for_params` picks a shape of the documented family."""

    n_layers: int | None = None
    d_model: int | None = None
    n_heads: int | None = None
    n_kv_heads: int | None = None  # grouped-query attention; default: n_heads
    params: float | None = None
    # with params: the family member picked must be within this relative distance of the target, else the size
    # is refused (the family's steps are coarse at small depths: 49k, 393k, 1.3M, 3.1M, ... parameters)
    tolerance: float = 0.25
    training: dict = field(default_factory=dict)  # `training` settings for this size (the most specific level)

    def check(self, key: str) -> None:
        explicit = (self.n_layers, self.d_model, self.n_heads)
        if not self.tolerance > 0:
            raise SweepError("", f"{key}.tolerance", f"must be > 0, got {self.tolerance}")
        if self.params is not None:
            if any(v is not None for v in explicit):
                raise SweepError("", key, "give either params or (n_layers, d_model, n_heads), not both")
            if not self.params > 0:
                raise SweepError("", f"{key}.params", f"must be > 0, got {self.params}")
            return
        if any(v is None for v in explicit):
            missing = [n for n, v in zip(("n_layers", "d_model", "n_heads"), explicit) if v is None]
            raise SweepError("", key, f"missing {', '.join(missing)} (or give params)")
        for name in ("n_layers", "d_model", "n_heads"):
            if getattr(self, name) <= 0:
                raise SweepError("", f"{key}.{name}", f"must be >= 1, got {getattr(self, name)}")
        if self.d_model % self.n_heads:
            raise SweepError("", f"{key}.d_model", f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}")
        if (self.d_model // self.n_heads) % 2:
            raise SweepError("", f"{key}.d_model", f"head dim d_model/n_heads={self.d_model // self.n_heads} must be even (rotary)")
        if self.n_kv_heads is not None and (self.n_kv_heads <= 0 or self.n_heads % self.n_kv_heads):
            raise SweepError("", f"{key}.n_kv_heads", f"must divide n_heads={self.n_heads}, got {self.n_kv_heads}")


@dataclass(frozen=True)
class BudgetSpec:
    """Training budgets: a list of token counts, or a list of FLOP budgets (tokens = C / FLOPs-per-token of each
    model, so every size of a FLOP budget spends the same compute)."""

    tokens: list = field(default_factory=list, metadata={"items": float})
    flops: list = field(default_factory=list, metadata={"items": float})

    def check(self, key: str) -> None:
        if bool(self.tokens) == bool(self.flops):
            raise SweepError("", key, "give exactly one non-empty list: tokens or flops")
        for name in ("tokens", "flops"):
            values = getattr(self, name)
            for i, v in enumerate(values):
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                    raise SweepError("", f"{key}.{name}[{i}]", f"must be a positive number, got {v!r}")
                if v > MAX_BUDGET[name]:
                    raise SweepError("", f"{key}.{name}[{i}]", f"{v:.3g} is beyond any real training run (the limit "
                                     f"is {MAX_BUDGET[name]:.0e}; docs/DESIGN.md 'Budgets'); a typo?")
                if v in values[:i]:
                    raise SweepError("", f"{key}.{name}[{i}]", f"{v:.6g} is listed twice (first as [{values.index(v)}])")


FILES_KEYS = ("roots", "modules", "include", "exclude")


def check_files_keys(section, key: str) -> None:
    """The `files` keys of a data or evaluation section: only with that source, strings, and (on this machine) roots
    that exist and patterns that match files, so a typo stops the launcher before anything is queued."""
    if section.source != "files":
        for name in FILES_KEYS:
            if getattr(section, name):
                raise SweepError("", f"{key}.{name}", f"applies to source 'files' only (source is {section.source!r})")
        return
    if section.path is not None:
        raise SweepError("", f"{key}.path", f"source 'files' takes roots and modules, not path ({section.path!r})")
    for name in FILES_KEYS:
        for i, v in enumerate(getattr(section, name)):
            if not isinstance(v, str) or not v:
                raise SweepError("", f"{key}.{name}[{i}]", f"must be a non-empty string, got {v!r}")
    from simplicial.data import DataError, gather_files

    try:
        gather_files(dataclasses.asdict(section), key)
    except DataError as e:
        raise SweepError("", e.key or key, e.reason) from None


@dataclass(frozen=True)
class DataSpec:
    """Where tokens come from. `python-stdlib`: this Python's standard-library source, always offline
    (docs/REFERENCE.md section 6). `text`: a text file or a folder of text files. `tokens`: pre-tokenized memory-mapped
    arrays `train.bin` / `val.bin` in `path` (dtype `token_dtype`, vocabulary `vocab_size`). `files`: the files
    under `roots` (absolute folders) and `modules` (Python packages, resolved to their installed folders on the
    machine that loads the sweep or runs the job) whose path below the root matches an `include` glob and no
    `exclude` glob (`**` spans folders); the roots and patterns are checked against the file system on load."""

    source: str = "python-stdlib"
    path: str | None = None
    tokenizer: str = "byte"  # byte | bpe (HF tokenizers, trained offline on the train split, cached)
    vocab_size: int = 256
    val_fraction: float = 0.05
    max_bytes: int | None = None  # cap the corpus (None: all of it)
    token_dtype: str = "uint16"
    cache_dir: str | None = None  # default: <output>/.cache/data
    # A run may pass over its unique training tokens at most this many times (the launcher refuses more and warns
    # above 1). Muennighoff et al. 2023, "Scaling Data-Constrained Language Models" (arXiv 2305.16264): up to about
    # 4 epochs repeated tokens are worth almost as much as fresh ones; beyond that their value decays quickly, so
    # a loss measured there is not the loss of a data-rich run of the same budget.
    max_epochs: float = 4.0
    # source `files`: absolute folders (or files); Python packages, e.g. [torch, transformers]; globs below each
    # root to keep (default: every file) and to drop, e.g. ["**/test*/**"]
    roots: list = field(default_factory=list, metadata={"items": str})
    modules: list = field(default_factory=list, metadata={"items": str})
    include: list = field(default_factory=list, metadata={"items": str})
    exclude: list = field(default_factory=list, metadata={"items": str})

    def check(self, key: str) -> None:
        if self.source not in ("python-stdlib", "text", "tokens", "files"):
            raise SweepError("", f"{key}.source", f"must be python-stdlib, text, tokens or files, got {self.source!r}")
        if self.source in ("text", "tokens") and not self.path:
            raise SweepError("", f"{key}.path", f"source {self.source!r} needs a path")
        self._check_files(key)
        if self.tokenizer not in ("byte", "bpe"):
            raise SweepError("", f"{key}.tokenizer", f"must be byte or bpe, got {self.tokenizer!r}")
        if self.tokenizer == "byte" and self.source != "tokens" and self.vocab_size != 256:
            raise SweepError("", f"{key}.vocab_size", f"the byte tokenizer has 256 tokens, got {self.vocab_size}")
        if self.vocab_size < 2:
            raise SweepError("", f"{key}.vocab_size", f"must be >= 2, got {self.vocab_size}")
        if self.tokenizer == "bpe" and self.vocab_size < 256:
            # byte-level BPE starts from the 256 byte symbols (HF tokenizers' ByteLevel alphabet) and adds merges
            raise SweepError("", f"{key}.vocab_size", f"byte-level BPE needs at least its 256 byte symbols, got "
                             f"{self.vocab_size}")
        if self.token_dtype not in ("uint16", "uint32"):
            raise SweepError("", f"{key}.token_dtype", f"must be uint16 or uint32, got {self.token_dtype!r}")
        if self.token_dtype == "uint16" and self.vocab_size > 65536:
            raise SweepError("", f"{key}.token_dtype", f"uint16 cannot hold vocab_size={self.vocab_size}")
        if not 0 < self.val_fraction < 1:
            raise SweepError("", f"{key}.val_fraction", f"must be in (0, 1), got {self.val_fraction}")
        if self.max_bytes is not None and self.max_bytes <= 0:
            raise SweepError("", f"{key}.max_bytes", f"must be > 0, got {self.max_bytes}")
        if not self.max_epochs > 0:
            raise SweepError("", f"{key}.max_epochs", f"must be > 0, got {self.max_epochs}")

    def _check_files(self, key: str) -> None:
        check_files_keys(self, key)


EVAL_KINDS = ("stdlib-code", "stdlib-tests", "stdlib-prose")


@dataclass(frozen=True)
class EvalSpec:
    """An evaluation set (`evals: {name: {...}}`), scored at the end of every run and at each eval_every step.
    Built-in held-out domains of the python-stdlib corpus, drawn from its validation documents only (never in the
    train split; simplicial/data.py): `stdlib-code` (library modules), `stdlib-tests` (test files), `stdlib-prose`
    (their comments and docstrings). Or, as `data` takes them: `text` (a file or folder, tokenized with the
    training tokenizer; a document identical to a training document is refused), `files` (roots / modules with
    include / exclude globs; the same refusal) or `tokens` (a pre-tokenized array file of data.token_dtype)."""

    source: str = "stdlib-code"
    path: str | None = None
    # source `files`, as in `data`: e.g. a package the training data leaves out, or the standard library's packages
    roots: list = field(default_factory=list, metadata={"items": str})
    modules: list = field(default_factory=list, metadata={"items": str})
    include: list = field(default_factory=list, metadata={"items": str})
    exclude: list = field(default_factory=list, metadata={"items": str})

    def check(self, key: str) -> None:
        if self.source not in (*EVAL_KINDS, "text", "tokens", "files"):
            raise SweepError("", f"{key}.source", f"must be one of {', '.join(EVAL_KINDS)}, text, tokens or files, "
                             f"got {self.source!r}")
        check_files_keys(self, key)
        if self.source in ("text", "tokens") and not self.path:
            raise SweepError("", f"{key}.path", f"source {self.source!r} needs a path")
        if self.source in EVAL_KINDS and self.path is not None:
            raise SweepError("", f"{key}.path", f"the built-in set {self.source!r} takes no path")
        if self.path is not None and not Path(self.path).expanduser().exists():
            raise SweepError("", f"{key}.path", f"{self.path!r}: no such file or folder")


@dataclass(frozen=True)
class TrainingSpec:
    """The training recipe. Defaults follow the paper's AdamW recipe scaled down (docs/REFERENCE.md section 1):
    warm-up then cosine decay to `min_lr_ratio` x peak over exactly the run's token budget.

    The sweep's `training:` applies to every run; `architectures.<a>.training` and `sizes.<s>.training` override
    any of its keys (but `seed`) for that architecture or size, the size winning (as executor resources do).
    `scaling_rule` sets lr and batch_tokens from each run's compute (sweeps/recipe.py: the rule, its source and
    why); an lr or batch_tokens set under an architecture or size still wins over the rule. `lr_multipliers`
    makes the learning rate a grid axis: every (arch, size, budget, seed) cell trains each multiple of its lr.
    `lr_tuning_seeds` restricts that axis to the seeds it names: the sweep's other seeds (the replicates) train
    only the multiplier that won on them (sweeps/state.py, `tune_lr`), once their runs are done."""

    seq_len: int = 256
    batch_tokens: int = 16384  # global batch in tokens; reached by gradient accumulation
    micro_batch_size: int = 16  # sequences per forward pass per process
    lr: float = 3e-3
    min_lr_ratio: float = 0.1
    warmup_fraction: float = 0.05  # of the run's steps
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    eval_every: int = 100  # steps; 0: only at the end
    eval_tokens: int = 65536
    log_every: int = 10
    checkpoint_every: int = 200  # steps
    tie_embeddings: bool = True
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    threads: int | None = None  # torch CPU threads per run (default: cores / parallel runs)
    scaling_rule: str = "none"  # none | deepseek-llm (sweeps/recipe.py)
    lr_multipliers: list = field(default_factory=lambda: [1.0], metadata={"items": float})
    lr_tuning_seeds: list = field(default_factory=list, metadata={"items": int})  # empty: every seed sweeps the lr
    # cosine: warm-up, cosine decay over each run's budget. wsd: warm-up, stable, then a 1-sqrt decay over the last
    # decay_fraction of each budget's steps, every budget of an (arch, size, lr, seed) ladder branching off one
    # shared stable trunk (Hagele et al. 2024, arXiv 2405.18392; simplicial/train.py)
    schedule: str = "cosine"
    decay_fraction: float = 0.2
    compile: bool = False  # compile each block (benchmarks/results/training-2026-12-07.md: 1.4-1.7x, 4-10 s first)

    def check(self, key: str) -> None:
        from sweeps.recipe import RULES

        if self.schedule not in ("cosine", "wsd"):
            raise SweepError("", f"{key}.schedule", f"must be cosine or wsd, got {self.schedule!r}")
        if not 0 < self.decay_fraction <= 1:
            raise SweepError("", f"{key}.decay_fraction", f"must be in (0, 1], got {self.decay_fraction}")
        if self.scaling_rule not in RULES:
            raise SweepError("", f"{key}.scaling_rule", f"must be one of {', '.join(RULES)}, got {self.scaling_rule!r}")
        if not self.lr_multipliers:
            raise SweepError("", f"{key}.lr_multipliers", "must list at least one multiplier (1.0: the lr as resolved)")
        for i, m in enumerate(self.lr_multipliers):
            if not m > 0:
                raise SweepError("", f"{key}.lr_multipliers[{i}]", f"must be > 0, got {m}")
        if len(set(self.lr_multipliers)) != len(self.lr_multipliers):
            raise SweepError("", f"{key}.lr_multipliers", f"has duplicates: {self.lr_multipliers}")
        positive = ("seq_len", "batch_tokens", "micro_batch_size", "eval_tokens", "log_every", "checkpoint_every")
        for name in positive:
            if getattr(self, name) <= 0:
                raise SweepError("", f"{key}.{name}", f"must be >= 1, got {getattr(self, name)}")
        if self.batch_tokens % self.seq_len:
            raise SweepError("", f"{key}.batch_tokens", f"{self.batch_tokens} is not a multiple of seq_len={self.seq_len}")
        if not self.lr > 0:
            raise SweepError("", f"{key}.lr", f"must be > 0, got {self.lr}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise SweepError("", f"{key}.min_lr_ratio", f"must be in [0, 1], got {self.min_lr_ratio}")
        if not 0 <= self.warmup_fraction < 1:
            raise SweepError("", f"{key}.warmup_fraction", f"must be in [0, 1), got {self.warmup_fraction}")
        if self.weight_decay < 0 or self.grad_clip < 0 or self.eval_every < 0:
            raise SweepError("", key, "weight_decay, grad_clip and eval_every must be >= 0")
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1):
            raise SweepError("", f"{key}.beta1/beta2", "must be in [0, 1)")
        if self.device not in ("auto", "cpu", "cuda"):
            raise SweepError("", f"{key}.device", f"must be auto, cpu or cuda, got {self.device!r}")
        if self.threads is not None and self.threads <= 0:
            raise SweepError("", f"{key}.threads", f"must be >= 1, got {self.threads}")
        if not 0 <= self.seed <= MAX_SEED:
            raise SweepError("", f"{key}.seed", f"must be in [0, 2^63 - 1], got {self.seed}")


@dataclass(frozen=True)
class ResourceSpec:
    """Scheduler resources for one run. Any field left None inherits from the level above
    (executor.resources -> per_arch -> per_size; the most specific wins)."""

    partition: str | None = None
    gpus_per_node: int | None = None
    tasks_per_node: int | None = None  # > 1: DistributedDataParallel, one process per task
    cpus_per_task: int | None = None
    mem_gb: float | None = None
    timeout_min: int | None = None
    qos: str | None = None
    account: str | None = None
    constraint: str | None = None
    additional_parameters: dict = field(default_factory=dict)  # extra sbatch flags, e.g. {"exclusive": true}
    setup: list = field(default_factory=list, metadata={"items": str})  # shell lines run before the job

    def check(self, key: str) -> None:
        for name in ("gpus_per_node", "cpus_per_task", "timeout_min"):
            v = getattr(self, name)
            if v is not None and v < (0 if name == "gpus_per_node" else 1):
                raise SweepError("", f"{key}.{name}", f"must be {'>= 0' if name == 'gpus_per_node' else '>= 1'}, got {v}")
        if self.tasks_per_node is not None and self.tasks_per_node < 1:
            raise SweepError("", f"{key}.tasks_per_node", f"must be >= 1, got {self.tasks_per_node}")
        if self.mem_gb is not None and not self.mem_gb > 0:
            raise SweepError("", f"{key}.mem_gb", f"must be > 0, got {self.mem_gb}")
        for i, line in enumerate(self.setup):
            if not isinstance(line, str):
                raise SweepError("", f"{key}.setup[{i}]", f"must be a string, got {line!r}")

    def merged(self, over: "ResourceSpec") -> "ResourceSpec":
        """This spec with every field that `over` sets replaced (dicts merge, lists replace)."""
        values = {}
        for f in dataclasses.fields(self):
            mine, theirs = getattr(self, f.name), getattr(over, f.name)
            if f.name == "additional_parameters":
                values[f.name] = {**mine, **theirs}
            elif f.name == "setup":
                values[f.name] = list(theirs) if theirs else list(mine)
            else:
                values[f.name] = theirs if theirs is not None else mine
        return ResourceSpec(**values)


@dataclass(frozen=True)
class ExecutorSpec:
    """How runs are executed: `local` (subprocesses on this machine through submitit), `slurm` (job arrays through
    submitit), `debug` (in-process, for pdb)."""

    name: str = "local"
    max_parallel: int = 1  # local: runs at once; slurm: cap per array (%N), so k arrays may run k x N at once
    resources: ResourceSpec = field(default_factory=ResourceSpec)
    per_arch: dict = field(default_factory=dict)  # arch name -> ResourceSpec
    per_size: dict = field(default_factory=dict)  # size name -> ResourceSpec
    max_array_size: int | None = None  # default: the cluster's MaxArraySize (scontrol show config)
    runs_per_gpu: int = 1  # local: runs sharing one GPU at once (sweeps/gpus.py); > 1 packs small runs

    def check(self, key: str) -> None:
        if self.name not in ("local", "slurm", "debug"):
            raise SweepError("", f"{key}.name", f"must be local, slurm or debug, got {self.name!r}")
        if self.max_parallel < 1:
            raise SweepError("", f"{key}.max_parallel", f"must be >= 1, got {self.max_parallel}")
        if self.max_array_size is not None and self.max_array_size < 1:
            raise SweepError("", f"{key}.max_array_size", f"must be >= 1, got {self.max_array_size}")
        if self.runs_per_gpu < 1:
            raise SweepError("", f"{key}.runs_per_gpu", f"must be >= 1, got {self.runs_per_gpu}")
        self.resources.check(f"{key}.resources")
        for group in ("per_arch", "per_size"):
            for name, res in getattr(self, group).items():
                res.check(f"{key}.{group}.{name}")


@dataclass(frozen=True)
class TrackingSpec:
    """Live curves beside metrics.jsonl (simplicial/tracking.py), keyed by run id so a requeued or re-launched run
    continues its tracked run. Not part of any run's identity. Needs `pip install 'simplex-scaling[tracking]'`."""

    tensorboard: bool = False  # event files in <run_dir>/tensorboard/ (`tensorboard --logdir <sweep_dir>/runs`)
    wandb: str = "off"  # off | online | offline (no network: `wandb sync <sweep_dir>/wandb/offline-run-*` later)
    wandb_project: str | None = None  # default: the sweep name
    wandb_entity: str | None = None  # default: your W&B default entity
    wandb_dir: str | None = None  # default: <sweep_dir> (W&B adds wandb/); relative: to the sweep folder
    wandb_tags: list = field(default_factory=list, metadata={"items": str})

    def check(self, key: str) -> None:
        if self.wandb not in ("off", "online", "offline"):
            raise SweepError("", f"{key}.wandb", f"must be off, online or offline, got {self.wandb!r}")
        for name in ("wandb_project", "wandb_entity"):
            v = getattr(self, name)
            if v is not None and (not v or any(c in v for c in "/\\#?%:")):
                raise SweepError("", f"{key}.{name}", f"must be a non-empty name without / \\ # ? % :, got {v!r}")

    @property
    def enabled(self) -> bool:
        return self.tensorboard or self.wandb != "off"


@dataclass(frozen=True)
class SweepSpec:
    """A whole sweep: the grid and everything its runs share. Load with `load_sweep(path)`."""

    name: str
    architectures: dict  # name -> ArchSpec
    sizes: dict  # name -> SizeSpec
    budgets: BudgetSpec
    output: str = "outputs"  # output root; a relative path resolves against the sweep file's folder
    data: DataSpec = field(default_factory=DataSpec)
    training: TrainingSpec = field(default_factory=TrainingSpec)
    executor: ExecutorSpec = field(default_factory=ExecutorSpec)
    tracking: TrackingSpec = field(default_factory=TrackingSpec)
    seeds: list = field(default_factory=lambda: [0], metadata={"items": int})
    evals: dict = field(default_factory=dict)  # name -> EvalSpec: extra evaluation sets (results: loss_<name>)
    description: str = ""
    source_path: str = ""  # filled by load_sweep; not part of any run's identity

    @property
    def output_root(self) -> Path:
        root = Path(self.output).expanduser()
        if not root.is_absolute() and self.source_path:
            root = Path(self.source_path).resolve().parent / root
        return root.resolve()

    @property
    def sweep_dir(self) -> Path:
        return self.output_root / self.name

    def check(self) -> None:
        if not self.name or not all(c.isalnum() or c in "-_." for c in self.name) or self.name.startswith("."):
            # the name is a folder under the output root: '..' (or any leading dot) would leave it or hide it
            raise SweepError("", "name", "must be a name of letters, digits, '-', '_', '.' that does not start with "
                             f"'.', got {self.name!r}")
        for group in ("architectures", "sizes"):
            if not getattr(self, group):
                raise SweepError("", group, "must name at least one entry")
            for name in getattr(self, group):
                if not isinstance(name, str) or not name or not all(c.isalnum() or c in "-_." for c in name):
                    raise SweepError("", f"{group}.{name}", "names must be letters, digits, '-', '_', '.'")
        for name, arch in self.architectures.items():
            arch.check(f"architectures.{name}")
        for name, size in self.sizes.items():
            size.check(f"sizes.{name}")
        for name, ev in self.evals.items():
            if not name.isidentifier() or name in ("val", "train"):
                raise SweepError("", f"evals.{name}", "names must be identifiers (they become columns loss_<name>), "
                                 "not 'val' or 'train'")
            ev.check(f"evals.{name}")
            if ev.source in EVAL_KINDS and self.data.source != "python-stdlib":
                raise SweepError("", f"evals.{name}.source", f"{ev.source!r} is a held-out split of the python-stdlib "
                                 f"corpus; data.source is {self.data.source!r}")
            if ev.source == "tokens" and self.data.source != "tokens" and self.data.tokenizer != "byte":
                raise SweepError("", f"evals.{name}.source", "pre-tokenized evaluation tokens need a tokenizer "
                                 "known before training: use data.tokenizer byte or data.source tokens")
        self.budgets.check("budgets")
        self.data.check("data")
        self.training.check("training")
        self.executor.check("executor")
        self.tracking.check("tracking")
        for group, known in (("per_arch", self.architectures), ("per_size", self.sizes)):
            for name in getattr(self.executor, group):
                if name not in known:
                    raise SweepError("", f"executor.{group}.{name}", f"no such entry; known: {sorted(known)}")
        if not self.seeds or any(isinstance(s, bool) or not isinstance(s, int) for s in self.seeds):
            raise SweepError("", "seeds", f"must be a non-empty list of integers, got {self.seeds!r}")
        if len(set(self.seeds)) != len(self.seeds):
            raise SweepError("", "seeds", f"has duplicates: {self.seeds}")
        for i, s in enumerate(self.seeds):
            if not 0 <= s <= MAX_SEED:
                raise SweepError("", f"seeds[{i}]", f"must be in [0, 2^63 - 1], got {s}")
        sections = [("training", self.training.lr_tuning_seeds)]
        sections += [(f"{g}.{n}.training", e.training["lr_tuning_seeds"]) for g in ("architectures", "sizes")
                     for n, e in getattr(self, g).items() if "lr_tuning_seeds" in e.training]
        for key, tuning in sections:
            for i, s in enumerate(tuning):
                if s not in self.seeds:
                    raise SweepError("", f"{key}.lr_tuning_seeds[{i}]",
                                     f"{s} is not one of the sweep's seeds {self.seeds}")
            if len(set(tuning)) != len(tuning):
                raise SweepError("", f"{key}.lr_tuning_seeds", f"has duplicates: {tuning}")
            if tuning and set(tuning) == set(self.seeds):
                raise SweepError("", f"{key}.lr_tuning_seeds", f"names every seed {self.seeds}: no seed is left to "
                                 f"train at the tuned lr alone; leave it out (every seed sweeps the lr axis)")


# ----------------------------------------------------------------------------------------------------------------
# Loading: a small typed converter in the spirit of nanoGPT's configurator (unknown keys and type changes rejected).

_NESTED = {"resources": ResourceSpec, "data": DataSpec, "training": TrainingSpec, "executor": ExecutorSpec,
           "budgets": BudgetSpec, "tracking": TrackingSpec}
_MAPS = {"architectures": ArchSpec, "sizes": SizeSpec, "per_arch": ResourceSpec, "per_size": ResourceSpec,
         "evals": EvalSpec}


def _resolve(annotation: Any) -> Any:
    if isinstance(annotation, str):
        annotation = eval(annotation, {"dict": dict, "list": list})  # noqa: S307 - only our own field annotations
    return annotation


def _type_ok(value: Any, annotation: Any) -> bool:
    """Does a YAML value fit a simple field annotation? ints are accepted where floats are expected."""
    annotation = _resolve(annotation)
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, a) for a in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, annotation)


def _is_numeric(annotation: Any) -> bool:
    """Is the field a number (int or float, possibly optional)? Only those get numeric-looking strings coerced."""
    annotation = _resolve(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return any(_is_numeric(a) for a in typing.get_args(annotation))
    return annotation in (int, float)


def _number(value: Any) -> Any:
    """yaml.safe_load reads '1e6' as a string (YAML 1.1 wants a dot in a float); in a numeric field, treat
    numeric-looking strings as numbers. Never applied to string fields: `account: "12345"` stays a string."""
    if isinstance(value, str):
        try:
            f = float(value)
        except ValueError:
            return value
        if f.is_integer() and "." not in value and "e" not in value.lower():
            return int(f)
        return f
    return value


def _check_number(value: Any, path: str) -> None:
    """inf and nan pass every comparison-based range check (or fail them late, inside each run): refuse them here."""
    if isinstance(value, float) and not math.isfinite(value):
        raise SweepError("", path, f"must be a finite number, got {value}")


def _scalar(value: Any, annotation: Any, path: str) -> Any:
    if _is_numeric(annotation):
        value = _number(value)
        _check_number(value, path)
    if _resolve(annotation) is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not _type_ok(value, annotation):
        hint = ""
        if _type_ok(str(value), annotation) and isinstance(value, (int, float)) and not isinstance(value, bool):
            hint = f" (write it quoted, \"{value}\", if you mean the string)"
        raise SweepError("", path, f"expected {_type_name(annotation)}, got {type(value).__name__} {value!r}{hint}")
    return value


def _build(cls: type, raw: Any, key: str) -> Any:
    if not isinstance(raw, dict):
        raise SweepError("", key or "(top level)", f"must be a mapping, got {type(raw).__name__} {raw!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name != "source_path"}
    for name in raw:
        if not isinstance(name, str):
            raise SweepError("", f"{key + '.' if key else ''}{name!r}",
                             f"keys must be strings (names of settings), got {type(name).__name__} {name!r}")
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise SweepError("", f"{key + '.' if key else ''}{unknown[0]}", f"unknown key; allowed: {sorted(fields)}")
    values = {}
    for name, value in raw.items():
        path = f"{key}.{name}" if key else name
        if name == "training" and cls in (ArchSpec, SizeSpec):
            values[name] = _training_overrides(value if value is not None else {}, path)
        elif name in _NESTED:
            if name == "training":
                _check_rule_conflict(value or {}, path)
            values[name] = _build(_NESTED[name], value if value is not None else {}, path)
        elif name in _MAPS:
            if not isinstance(value, dict):
                raise SweepError("", path, f"must be a mapping of name -> settings, got {value!r}")
            built = {}
            for k, v in value.items():
                if str(k) in built:  # e.g. 1: and "1": two spellings of one name
                    raise SweepError("", f"{path}.{k}", "is named twice")
                built[str(k)] = _build(_MAPS[name], v if v is not None else {}, f"{path}.{k}")
            values[name] = built
        elif isinstance(value, list):
            items = fields[name].metadata.get("items")
            if items is None:  # an untyped list: numbers as written are numbers
                value = [_number(v) for v in value]
                for i, v in enumerate(value):
                    _check_number(v, f"{path}[{i}]")
            else:
                value = [_scalar(v, items, f"{path}[{i}]") for i, v in enumerate(value)]
            if not _type_ok(value, hints[name]):
                raise SweepError("", path, f"expected {_type_name(hints[name])}, got list {value!r}")
            values[name] = value
        else:
            values[name] = _scalar(value, hints[name], path)
    missing = [n for n, f in fields.items() if n not in values and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise SweepError("", f"{key + '.' if key else ''}{missing[0]}", "required key is missing")
    return cls(**values)


def _training_overrides(raw: Any, path: str) -> dict:
    """An architecture's or size's `training:`: any TrainingSpec keys but `seed`, type-checked, kept as given (only
    the keys written override the sweep's training)."""
    built = _build(TrainingSpec, raw, path)
    if "seed" in raw:
        raise SweepError("", f"{path}.seed", "seeds are sweep-wide: list them in `seeds:`")
    _check_rule_conflict(raw, path)
    return {k: getattr(built, k) for k in raw}


def _check_rule_conflict(raw: Any, path: str) -> None:
    """A scaling rule sets lr and batch_tokens: writing either beside it, in the same section, would be ignored."""
    from sweeps.recipe import RULES

    if not isinstance(raw, dict) or raw.get("scaling_rule", "none") not in RULES[1:]:
        return  # no rule (an unknown one is refused by TrainingSpec.check)
    for name in ("lr", "batch_tokens"):
        if name in raw:
            raise SweepError("", f"{path}.{name}", f"{raw[name]!r} conflicts with scaling_rule {raw['scaling_rule']!r}, "
                             f"which sets {name}; remove one (an architecture's or size's {name} overrides the rule)")


def _type_name(annotation: Any) -> str:
    args = typing.get_args(annotation)
    if args:
        return " or ".join(_type_name(a) for a in args)
    return "null" if annotation is type(None) else getattr(annotation, "__name__", str(annotation))


def parse_sweep(raw: Any, source_path: str = "") -> SweepSpec:
    """Validate a parsed YAML document and return the SweepSpec; errors name `source_path`."""
    try:
        raw = _seed_from_training(raw)
        spec = _build(SweepSpec, raw, "")
        spec = dataclasses.replace(spec, source_path=str(source_path))
        spec.check()
        _check_output(spec)
        from sweeps.grid import check_shapes  # grid and recipe resolve shapes and recipes from this module's specs
        from sweeps.recipe import check_recipes

        check_recipes(spec)
        check_shapes(spec)
    except SweepError as e:
        if e.path:
            raise
        raise SweepError(str(source_path), e.key, e.reason) from None
    return spec


def _seed_from_training(raw: Any) -> Any:
    """`training.seed` alone is the sweep's one seed; beside `seeds:` one of the two would be ignored, so refuse."""
    if not isinstance(raw, dict) or not isinstance(raw.get("training"), dict) or "seed" not in raw["training"]:
        return raw
    if "seeds" in raw:
        raise SweepError("", "training.seed", f"{raw['training']['seed']!r} conflicts with seeds: {raw['seeds']!r}; "
                         "give the seeds in `seeds:` only")
    return {**raw, "seeds": [raw["training"]["seed"]]}


def _check_output(spec: SweepSpec) -> None:
    """The sweep folder must be creatable: the first existing path on the way to it must be a folder."""
    for p in (spec.sweep_dir, *spec.sweep_dir.parents):
        if p.exists():
            if not p.is_dir():
                raise SweepError("", "output", f"{p} exists and is not a folder (sweep folder: {spec.sweep_dir})")
            return


def _mapping_path(node: yaml.Node, at: str) -> str:
    return f"{at}.{node.value}" if at else str(node.value)


def _reject_duplicate_keys(node: yaml.Node, at: str = "") -> None:
    """A mapping that names a key twice: YAML keeps the last silently (a second `dot:` would replace the first
    architecture). Refuse, naming the key and both lines. Merge keys (`<<:`) are YAML's deliberate overrides."""
    if isinstance(node, yaml.MappingNode):
        seen: dict[tuple, int] = {}
        for key, value in node.value:
            if key.tag == "tag:yaml.org,2002:merge":
                continue
            if isinstance(key, yaml.ScalarNode):
                ident = (key.tag, key.value)
                line = key.start_mark.line + 1
                if ident in seen:
                    raise SweepError("", _mapping_path(key, at),
                                     f"duplicate key: line {line} repeats the key of line {seen[ident]}")
                seen[ident] = line
            _reject_duplicate_keys(value, _mapping_path(key, at) if isinstance(key, yaml.ScalarNode) else at)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _reject_duplicate_keys(item, f"{at}[{i}]")


def load_sweep(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> SweepSpec:
    """Read and validate a sweep YAML (yaml.safe_load), with dotted `key=value` overrides applied to the document
    first (`apply_overrides`). Raises SweepError naming the file, key path and reason, and the override when the
    bad value came from one."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise SweepError(str(path), "(file)", f"cannot read: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise SweepError(str(path), "(file)", f"not a text file (byte {e.start} is not UTF-8)") from None
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is not None:
            _reject_duplicate_keys(node)
        raw = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as e:
        raise SweepError(str(path), "(yaml)", f"not valid YAML: {e}") from None
    except SweepError as e:
        raise SweepError(str(path), e.key, e.reason) from None
    finally:
        loader.dispose()
    if not overrides:
        return parse_sweep(raw, str(path))
    raw = apply_overrides(raw, overrides, str(path))
    try:
        return parse_sweep(raw, str(path))
    except SweepError as e:
        culprit = _override_for(e.key, overrides)
        where = f"{path} (override {culprit})" if culprit else f"{path} (with overrides {' '.join(overrides)})"
        raise SweepError(where, e.key, e.reason) from None


# ----------------------------------------------------------------------------------------------------------------
# Dotted overrides, in the spirit of hydra's and OLMo-core's command lines: `training.lr=1e-3 sizes.s.n_layers=6`.


def parse_override(text: str) -> tuple[list[str], Any]:
    """'a.b.c=VALUE' -> (['a', 'b', 'c'], value), VALUE read as a YAML scalar or flow collection (so `1e-3`, `true`,
    `null`, `[1, 2]` and `{type: dot}` mean what they mean in the file). Raises SweepError naming the argument."""
    key, sep, value = text.partition("=")
    parts = key.split(".")
    if not sep or not key or any(not p or p != p.strip() for p in parts):
        raise SweepError("", f"override {text!r}", "expected KEY=VALUE with a dotted key, e.g. training.lr=1e-3")
    try:
        parsed = yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError as e:
        raise SweepError("", f"override {text!r}", f"value is not valid YAML: {e}") from None
    return parts, parsed


def apply_overrides(raw: Any, overrides: list[str] | tuple[str, ...], source: str = "") -> dict:
    """The sweep document with each override applied in order (a later one wins). A missing intermediate mapping is
    created (`sizes.l.params=1e8` adds a size); the result is validated by `parse_sweep` exactly like the file."""
    if not isinstance(raw, dict):
        raise SweepError(source, "(top level)", f"must be a mapping, got {type(raw).__name__}")
    doc = copy.deepcopy(raw)
    for text in overrides:
        try:
            parts, value = parse_override(text)
        except SweepError as e:
            raise SweepError(source, e.key, e.reason) from None
        node = doc
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise SweepError(source, ".".join(parts[: i + 1]),
                                 f"override {text!r}: is a {type(child).__name__} ({child!r}), not a mapping")
            node = child
        node[parts[-1]] = value
    return doc


def _override_for(key: str, overrides) -> str | None:
    """The last override whose dotted key is, contains or lies inside the error's key path."""
    err = key.split("[")[0].split("/")[0]
    for text in reversed(list(overrides)):
        ov = text.partition("=")[0]
        if err == ov or err.startswith(ov + ".") or ov.startswith(err + "."):
            return text
    return None


def resolved_document(spec: SweepSpec) -> dict:
    """The validated sweep as a plain document that `parse_sweep` reads back to an equal spec (defaults filled in,
    `output` absolute so the file works from any folder): what `<sweep_dir>/sweep.yaml` holds."""
    doc = dataclasses.asdict(spec)
    doc.pop("source_path")
    doc["training"].pop("seed")  # `seeds` holds it; both in one file is refused as ambiguous
    doc["output"] = str(spec.output_root)
    return doc

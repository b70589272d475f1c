"""Training data, offline: corpora, tokenizers, a disk cache of token arrays, and deterministic batches.

Sources (`DataSpec.source`):
- `python-stdlib`: the Python standard library's own .py source (about 31 MB on Python 3.11), present on every machine
  with Python and reachable without a network (docs/REFERENCE.md section 6). Its content follows the Python version,
  which is recorded in the cache metadata and in every result.
- `text`: a text file, or a folder whose files (recursively, sorted) are documents.
- `files`: the files under several folders (`roots`: absolute paths; `modules`: Python packages, resolved to their
  installed folders where the run executes) whose relative paths match an `include` glob and no `exclude` glob, e.g.
  the installed packages' own source. Its cache key follows a hash of the gathered content (`files_fingerprint`).
- `tokens`: pre-tokenized `train.bin` / `val.bin` (raw uint16/uint32 arrays, memory-mapped, as nanoGPT writes them).

Split: whole documents go to validation when a hash of their relative path falls under `val_fraction` (stable across
machines and file orders; for `files`, the path below the root prefixed by the module name or the root as written),
so no validation file is ever trained on; a single text file is split at 1 - val_fraction of its bytes.
Tokenizers: `byte` (256 symbols, no training) or `bpe` (byte-level BPE from HF `tokenizers`, trained offline on the
train split only, saved beside the token arrays).
Batches are a pure function of (seed, step, micro-batch index), so a resumed run sees exactly the batches an
uninterrupted run would, and a global batch is the same whatever the number of processes.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import re
import sys
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

CACHE_VERSION = 1


class DataError(ValueError):
    """The configured data cannot be read or is inconsistent with the sweep (names path and problem). `key`, when
    set, is the sweep key at fault (e.g. "data.modules[1]") and `reason` the message without it."""

    def __init__(self, message: str, key: str | None = None):
        self.key, self.reason = key, message
        super().__init__(f"{key}: {message}" if key else message)


@dataclass
class TokenSplits:
    train: np.ndarray  # 1-D token array (memory-mapped)
    val: np.ndarray
    vocab_size: int
    description: str  # e.g. "python-stdlib (Python 3.11.7, 1893 files, 31.2 MB)"
    tokenizer: str
    evals: dict = field(default_factory=dict)  # name -> token array of an evaluation set (`load_eval`)


# ----------------------------------------------------------------------------------------------------------------
# Documents


def _stdlib_documents() -> list[tuple[str, Path]]:
    root = Path(sysconfig.get_paths()["stdlib"])
    docs = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel.startswith(("site-packages/", "dist-packages/")):
            continue
        docs.append((rel, path))
    if not docs:
        raise DataError(f"python-stdlib: no .py files under {root}")
    return docs


def _text_documents(path: str) -> list[tuple[str, Path]]:
    p = Path(path).expanduser()
    if p.is_file():
        return [(p.name, p)]
    if p.is_dir():
        docs = [(f.relative_to(p).as_posix(), f) for f in sorted(p.rglob("*")) if f.is_file()]
        if docs:
            return docs
        raise DataError(f"{path!r}: the folder holds no files", "data.path")
    raise DataError(f"{path!r}: no such file or folder", "data.path")


# `files`: folders gathered with include / exclude globs.


def glob_regex(pattern: str) -> re.Pattern:
    """A compiled regex for a glob over '/'-separated relative paths: `**` spans any number of folders (`**/` also
    none), `*` and `?` stay within one name, `[...]` is a character class (the rules of pathlib's full_match and
    of git's wildmatch, which fnmatch lacks: its `*` crosses '/')."""
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[" and "]" in pattern[i + 2 :]:
            end = pattern.index("]", i + 2)
            body = pattern[i + 1 : end]
            out.append("[" + ("^" + body[1:] if body.startswith("!") else body).replace("\\", "\\\\") + "]")
            i = end + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z", re.DOTALL)


def file_roots(data: dict, key: str = "data") -> list[tuple[str, Path, str]]:
    """(label, path, sweep key) of every root: `roots` as written (absolute, `~` expanded), then each of `modules`
    resolved by the import system of this process without importing it (a package's folders; a one-file module's
    file). The label prefixes document names, so names (and the train/val split) do not depend on where a package
    is installed."""
    out = []
    for i, root in enumerate(data.get("roots") or []):
        p = Path(root).expanduser()
        if not p.is_absolute():
            raise DataError(f"{root!r} is not an absolute path", f"{key}.roots[{i}]")
        if not p.exists():
            raise DataError(f"{root!r}: no such file or folder", f"{key}.roots[{i}]")
        out.append((str(root).rstrip("/") or "/", p, f"{key}.roots[{i}]"))
    for i, name in enumerate(data.get("modules") or []):
        where = f"{key}.modules[{i}]"
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError) as e:
            raise DataError(f"{name!r}: cannot be resolved ({e})", where) from None
        if spec is None:
            raise DataError(f"{name!r}: no such module for {sys.executable}", where)
        if spec.submodule_search_locations:
            out += [(name, Path(loc), where) for loc in sorted(spec.submodule_search_locations)]
        elif spec.origin and Path(spec.origin).is_file():
            out.append((name, Path(spec.origin), where))
        else:
            raise DataError(f"{name!r} has no source files (origin {spec.origin!r})", where)
    if not out:
        raise DataError("source 'files' needs at least one of roots, modules", key)
    return out


def gather_files(data: dict, key: str = "data") -> list[tuple[str, Path]]:
    """Documents of a `files` source: ("label/relative/path", path), roots in the order written, paths sorted within
    each, a file reached through two roots kept once. Refuses (DataError naming the key) a root or module that
    does not exist or contributes no file, and an include or exclude pattern that matches no file: a typo must not
    quietly change the corpus."""
    include = [glob_regex(p) for p in data.get("include") or ["**/*"]]
    exclude = [glob_regex(p) for p in data.get("exclude") or []]
    inc_hits, exc_hits = [False] * len(include), [False] * len(exclude)
    docs, seen = [], set()
    for label, root, where in file_roots(data, key):
        paths = [(root.name, root)] if root.is_file() else sorted(
            (f.relative_to(root).as_posix(), f) for f in root.rglob("*") if f.is_file())
        kept = new = 0
        for rel, path in paths:
            inc = [bool(r.match(rel)) for r in include]
            exc = [bool(r.match(rel)) for r in exclude]
            inc_hits = [a or b for a, b in zip(inc_hits, inc)]
            exc_hits = [a or b for a, b in zip(exc_hits, exc)]
            if any(inc) and not any(exc):
                kept += 1
                real = path.resolve()
                if real not in seen:
                    seen.add(real)
                    docs.append((f"{label}/{rel}", path))
                    new += 1
        shown = repr(label) + (f" ({root})" if label != str(root) else "")
        if not kept:
            raise DataError(f"{shown} holds no file that the include/exclude patterns keep", where)
        if not new:
            raise DataError(f"{shown}: every file it keeps was already gathered from an earlier root", where)
    for name, hits in (("include", inc_hits), ("exclude", exc_hits)):
        for i, hit in enumerate(hits):
            if not hit:
                pattern = (data.get(name) or ["**/*"])[i]
                raise DataError(f"{pattern!r} matches no file under the roots", f"{key}.{name}[{i}]")
    return docs


def files_fingerprint(docs: list[tuple[str, Path]]) -> dict:
    """What a `files` corpus holds, exactly and independently of where it lives: the number of files, their bytes,
    and a SHA-256 over every (name, size, SHA-256 of content) in order. Reading everything is cheap next to
    tokenizing it (about 0.1-0.3 s per 50 MB here); mtimes are left out, since copies of the same files (a package
    installed on two machines) differ in them."""
    digest, total = hashlib.sha256(), 0
    for name, path in docs:
        blob = path.read_bytes()
        total += len(blob)
        digest.update(f"{name}\0{len(blob)}\0".encode())
        digest.update(hashlib.sha256(blob).digest())
    return {"files": len(docs), "bytes": total, "sha256": digest.hexdigest()}


def _module_versions(modules: list[str]) -> str:
    """'torch 2.11.0, jax 0.11.2': the distributions that installed the named modules, for the corpus description."""
    owners = importlib.metadata.packages_distributions()
    out = []
    for name in modules:
        dists = owners.get(name.split(".")[0], [])
        try:
            out.append(f"{name} {importlib.metadata.version(dists[0])}" if dists else name)
        except importlib.metadata.PackageNotFoundError:
            out.append(name)
    return ", ".join(out)


def _is_validation(name: str, val_fraction: float) -> bool:
    h = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big")
    return h / 2**64 < val_fraction


def _plan_split(data: dict, docs: list[tuple[str, Path]]) -> dict[str, list[tuple[Path, int]]]:
    """Which bytes of which documents each split reads: {"train": [(path, n_bytes)], "val": [...]}, from file sizes
    alone. The one home of the split rule, so the dry run counts exactly the tokens training will see."""
    cap = data.get("max_bytes") or float("inf")
    vf = data["val_fraction"]
    if len(docs) == 1:  # one file: split by position
        path = docs[0][1]
        n = int(min(cap, path.stat().st_size))
        cut = int(n * (1 - vf))
        return {"train": [(path, cut)], "val": [(path, n - cut)]}  # val: the n - cut bytes after the cut
    caps = {"train": cap * (1 - vf), "val": cap * vf}  # max_bytes is shared between the splits in proportion
    plan: dict[str, list[tuple[Path, int]]] = {"train": [], "val": []}
    used = {"train": 0, "val": 0}
    for name, path in docs:
        which = "val" if _is_validation(name, vf) else "train"
        if used[which] >= caps[which]:
            continue
        n = int(min(caps[which] - used[which], path.stat().st_size))
        plan[which].append((path, n))
        used[which] += n
    return plan


def _documents(data: dict) -> list[tuple[str, Path]]:
    if data["source"] == "python-stdlib":
        return _stdlib_documents()
    if data["source"] == "files":
        return gather_files(data)
    return _text_documents(data["path"])


def _split_texts(data: dict) -> tuple[list[bytes], list[bytes], str]:
    """Train and validation documents as bytes, plus a description of the corpus."""
    docs = _documents(data)
    plan = _plan_split(data, docs)
    if len(docs) == 1:
        (path, cut), (_, rest) = plan["train"][0], plan["val"][0]
        blob = path.read_bytes()[: cut + rest]
        train, val = [blob[:cut]], [blob[cut:]]
    else:
        train = [path.read_bytes()[:n] for path, n in plan["train"]]
        val = [path.read_bytes()[:n] for path, n in plan["val"]]
    total = sum(map(len, train)) + sum(map(len, val))
    if not train or not val:
        raise DataError(f"data {data['source']!r}: the split left an empty {'train' if not train else 'validation'} "
                        f"set ({len(docs)} documents, val_fraction={data['val_fraction']})")
    if data["source"] == "python-stdlib":
        where = f"Python {sys.version.split()[0]}, "
    elif data["source"] == "files":
        named = [*(data.get("roots") or []), _module_versions(data.get("modules") or [])]
        where = f"{'; '.join(n for n in named if n)}; sha256 {files_fingerprint(docs)['sha256'][:16]}; "
    else:
        where = f"{data['path']}, "
    desc = f"{data['source']} ({where}{len(docs)} documents, {total / 1e6:.1f} MB)"
    return train, val, desc


def train_token_count(data: dict, cache_root: Path) -> int | None:
    """The number of unique training tokens a run of this DataSpec draws from, without building anything: the cache's
    count when it exists, the size of train.bin for `tokens`, the planned bytes (plus the 2-byte document
    separators) for the byte tokenizer. None for a BPE corpus whose cache is not built yet (its count is known only
    after the tokenizer is trained)."""
    if data["source"] == "tokens":
        f = Path(data["path"]).expanduser() / "train.bin"
        return f.stat().st_size // np.dtype(data["token_dtype"]).itemsize if f.is_file() else None
    meta = Path(data.get("cache_dir") or cache_root) / cache_key(data) / "meta.json"
    if meta.exists():
        return int(json.loads(meta.read_text())["train_tokens"])
    if data["tokenizer"] != "byte":
        return None
    train = _plan_split(data, _documents(data))["train"]
    return sum(n for _, n in train) + 2 * max(0, len(train) - 1)


# ----------------------------------------------------------------------------------------------------------------
# Tokenizers


def _encode_bytes(docs: list[bytes]) -> np.ndarray:
    return np.frombuffer(b"\n\n".join(docs), dtype=np.uint8).astype(np.uint16)


def _train_bpe(train_docs: list[bytes], vocab_size: int, out: Path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False, special_tokens=[])
    tok.train_from_iterator((d.decode("utf-8", errors="replace") for d in train_docs), trainer=trainer)
    tok.save(str(out))
    return tok


def _encode_bpe(tok, docs: list[bytes], dtype) -> np.ndarray:
    encoded = tok.encode_batch([d.decode("utf-8", errors="replace") for d in docs])
    return np.concatenate([np.asarray(e.ids, dtype=dtype) for e in encoded]) if encoded else np.zeros(0, dtype)


# ----------------------------------------------------------------------------------------------------------------
# Cache


SAMPLE_BYTES = 1 << 20


def _sampled_sha256(path: Path, size: int) -> str:
    """SHA-256 of a whole file up to 3 MiB, else of its first, middle and last MiB."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        if size <= 3 * SAMPLE_BYTES:
            h.update(f.read())
        else:
            for offset in (0, size // 2 - SAMPLE_BYTES // 2, size - SAMPLE_BYTES):
                f.seek(offset)
                h.update(f.read(SAMPLE_BYTES))
    return h.hexdigest()


def data_fingerprint(data: dict) -> dict:
    """What the corpus holds now, cheaply, wherever it lives: {"files", "bytes", "sha256"}.

    The digest covers each document's name and size, and its content: all of it for `files` sources
    (`files_fingerprint`) and for files up to 3 MiB, else its first, middle and last MiB; for `python-stdlib`, the
    Python version and the files' names and sizes (its content follows the version). Modification times are left out
    (copies of the same files differ in them). An edit that keeps every size and touches no sampled byte of a file
    over 3 MiB goes unnoticed. The digest is part of the data cache key and of every run id (sweeps/grid.py), so a
    changed corpus gets a new cache and new runs, and the runs trained on the old one show as stale."""
    if data["source"] == "files":
        return files_fingerprint(gather_files(data))
    h, total = hashlib.sha256(), 0
    if data["source"] == "python-stdlib":
        docs = _stdlib_documents()
        h.update(f"python {sys.version.split()[0]}\n".encode())
        for name, path in docs:
            size = path.stat().st_size
            total += size
            h.update(f"{name}\0{size}\n".encode())
        return {"files": len(docs), "bytes": total, "sha256": h.hexdigest()}
    docs = _token_files(data) if data["source"] == "tokens" else _text_documents(data["path"])
    for name, path in docs:
        size = path.stat().st_size
        total += size
        h.update(f"{name}\0{size}\0{_sampled_sha256(path, size)}\n".encode())
    return {"files": len(docs), "bytes": total, "sha256": h.hexdigest()}


def _fingerprint_of(data: dict) -> str:
    """The corpus digest a RunSpec was resolved with (`data["fingerprint"]`), else computed now."""
    return data.get("fingerprint") or data_fingerprint(data)["sha256"]


def check_fingerprint(data: dict) -> None:
    """Refuse to train when the corpus changed after the run was resolved (its id names the old content)."""
    if data.get("fingerprint") is None:
        return
    now = data_fingerprint(data)["sha256"]
    if now != data["fingerprint"]:
        where = data.get("path") or data["source"]
        raise DataError(f"{where}: the corpus changed after this run was launched (content {data['fingerprint'][:12]}, "
                        f"now {now[:12]}); re-launch the sweep: the changed corpus gives new runs", "data")


def cache_key(data: dict) -> str:
    keyed = {k: data.get(k) for k in ("source", "path", "tokenizer", "vocab_size", "val_fraction", "max_bytes",
                                      "token_dtype")}
    if data["source"] == "files":
        keyed.update({k: data.get(k) for k in ("roots", "modules", "include", "exclude")})
    keyed["content"] = _fingerprint_of(data)  # the cache follows the corpus's content, not only its path
    keyed["version"] = CACHE_VERSION
    return hashlib.sha256(json.dumps(keyed, sort_keys=True).encode()).hexdigest()[:16]


def _build_cache(data: dict, folder: Path) -> None:
    train_docs, val_docs, desc = _split_texts(data)
    dtype = np.dtype(data["token_dtype"])
    if data["tokenizer"] == "byte":
        train, val = _encode_bytes(train_docs), _encode_bytes(val_docs)
        vocab = 256
    else:
        tok = _train_bpe(train_docs, data["vocab_size"], folder / "tokenizer.json.tmp")
        train, val = _encode_bpe(tok, train_docs, dtype), _encode_bpe(tok, val_docs, dtype)
        vocab = tok.get_vocab_size()
        os.replace(folder / "tokenizer.json.tmp", folder / "tokenizer.json")
    for name, arr in (("train", train), ("val", val)):
        arr.astype(dtype).tofile(folder / f"{name}.bin.tmp")
        os.replace(folder / f"{name}.bin.tmp", folder / f"{name}.bin")
    meta = {"description": desc, "tokenizer": data["tokenizer"], "vocab_size": int(vocab),
            "train_tokens": int(len(train)), "val_tokens": int(len(val)), "token_dtype": data["token_dtype"]}
    (folder / "meta.json.tmp").write_text(json.dumps(meta, indent=2))
    os.replace(folder / "meta.json.tmp", folder / "meta.json")  # written last: its presence marks a complete cache


def load_tokens(data: dict, cache_root: Path) -> TokenSplits:
    """Token arrays for a DataSpec dict, building (once, under a file lock) and caching them when needed."""
    check_fingerprint(data)
    if data["source"] == "tokens":
        return _load_pretokenized(data)
    folder = Path(data.get("cache_dir") or cache_root) / cache_key(data)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # concurrent runs of a sweep build the cache once
        if not (folder / "meta.json").exists():
            _build_cache(data, folder)
    meta = json.loads((folder / "meta.json").read_text())
    if meta["vocab_size"] > data["vocab_size"]:
        raise DataError(f"data.vocab_size={data['vocab_size']} is smaller than the tokenizer's {meta['vocab_size']}")
    dtype = np.dtype(meta["token_dtype"])
    return TokenSplits(train=np.memmap(folder / "train.bin", dtype=dtype, mode="r"),
                       val=np.memmap(folder / "val.bin", dtype=dtype, mode="r"),
                       vocab_size=data["vocab_size"], description=meta["description"], tokenizer=meta["tokenizer"])


def _token_files(data: dict) -> list[tuple[str, Path]]:
    """train.bin and val.bin of a `tokens` source, each a whole number of token_dtype items."""
    folder = Path(data["path"]).expanduser()
    if not folder.is_dir():
        raise DataError(f"{data['path']!r}: no such folder (source 'tokens' expects train.bin, val.bin in it)",
                        "data.path")
    itemsize = np.dtype(data["token_dtype"]).itemsize
    out = []
    for name in ("train.bin", "val.bin"):
        f = folder / name
        if not f.is_file():
            raise DataError(f"{data['path']!r}: missing {name} (source 'tokens' expects train.bin, val.bin)",
                            "data.path")
        if f.stat().st_size % itemsize:
            raise DataError(f"{f}: size {f.stat().st_size} is not a multiple of {data['token_dtype']} "
                            f"({itemsize} bytes): a truncated or foreign file?", "data.token_dtype")
        out.append((name, f))
    return out


def max_token(tokens: np.ndarray, chunk: int = 1 << 24) -> tuple[int, int]:
    """(largest id, its position) over every token, in chunks (a memory-mapped file is never read whole)."""
    best, where = -1, -1
    for start in range(0, len(tokens), chunk):
        part = np.asarray(tokens[start : start + chunk])
        i = int(part.argmax()) if part.size else 0
        if part.size and int(part[i]) > best:
            best, where = int(part[i]), start + i
    return best, where


def _load_pretokenized(data: dict) -> TokenSplits:
    folder = Path(data["path"]).expanduser()
    dtype = np.dtype(data["token_dtype"])
    arrays = {}
    for name, f in _token_files(data):
        split = name.removesuffix(".bin")
        arrays[split] = np.memmap(f, dtype=dtype, mode="r")
        top, at = max_token(arrays[split])
        if top >= data["vocab_size"]:
            raise DataError(f"{f}: token id {top} at position {at:,} >= data.vocab_size={data['vocab_size']}",
                            "data.vocab_size")
    return TokenSplits(train=arrays["train"], val=arrays["val"], vocab_size=data["vocab_size"],
                       description=f"tokens ({folder}, {len(arrays['train'])} train tokens)", tokenizer="pretokenized")


def preflight(data: dict, seq_len: int) -> None:
    """What can be checked about the data before any job is submitted (DataError naming the key): the corpus exists
    and is readable; token files are whole arrays whose every id is below vocab_size; each split holds at least
    seq_len + 2 tokens (counted from the cache, the token files, or, for the byte tokenizer, the planned bytes; a
    BPE corpus not yet cached is counted when its job builds the cache)."""
    if data["source"] == "tokens":
        splits = _load_pretokenized(data)
        counts = {"train": len(splits.train), "validation": len(splits.val)}
    else:
        docs = _documents(data)
        if data["tokenizer"] != "byte":
            return
        plan = _plan_split(data, docs)
        counts = {name: sum(n for _, n in plan[key]) + 2 * max(0, len(plan[key]) - 1)
                  for key, name in (("train", "train"), ("val", "validation"))}
    for split, n in counts.items():
        if n < seq_len + 2:
            raise DataError(f"the {split} split has {n:,} tokens, fewer than training.seq_len + 2 = {seq_len + 2} "
                            f"(give more data, or a larger val_fraction for validation)",
                            "data.val_fraction" if split == "validation" else "data.path")


# ----------------------------------------------------------------------------------------------------------------
# Evaluation sets (`evals:`), each never seen in training:
# - built-in domains of python-stdlib come from its validation documents only: a document is in validation when the
#   hash of its path falls under val_fraction (`_is_validation`), the same rule that keeps it out of the train split,
#   so no byte of them is trained on (the validation cap `max_bytes` does not apply: the whole held-out half is used);
# - `text` and `files` sets are refused when any of their documents is byte-identical to a training document (a
#   copied file, or a package that the training data also gathers);
#   overlap inside documents is not looked for;
# - `tokens` sets are the caller's responsibility (nothing is known of their text).

_TEST_PARTS = {"test", "tests", "idle_test", "idlelib_test"}


def stdlib_kind(rel: str) -> str:
    """'tests' for a test file of the standard library (a test folder or a test_*.py name), else 'code'."""
    parts = rel.split("/")
    return "tests" if _TEST_PARTS & set(parts[:-1]) or parts[-1].startswith("test_") else "code"


def prose(source: bytes) -> bytes:
    """The comments and docstrings of Python source (statement-level strings), one per paragraph; b"" when the file
    does not tokenize."""
    import io
    import tokenize

    out, prev = [], tokenize.NEWLINE
    try:
        for tok in tokenize.tokenize(io.BytesIO(source).readline):
            if tok.type == tokenize.COMMENT:
                out.append(tok.string.lstrip("#").strip())
            elif tok.type == tokenize.STRING and prev in (tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
                                                          tokenize.ENCODING, tokenize.NL):
                body = re.match(r"[rRbBuUfF]*(\"\"\"|'''|\"|')(.*)\1$", tok.string, re.S)
                out.append(body.group(2).strip() if body else "")
            if tok.type not in (tokenize.COMMENT, tokenize.NL):
                prev = tok.type
    except (tokenize.TokenError, SyntaxError, UnicodeDecodeError):
        return b""
    return "\n\n".join(t for t in out if t).encode()


def _eval_documents(data: dict, ev: dict) -> list[bytes]:
    if ev["source"].startswith("stdlib-"):
        held_out = [(rel, path) for rel, path in _stdlib_documents() if _is_validation(rel, data["val_fraction"])]
        kind = ev["source"].removeprefix("stdlib-")
        if kind == "prose":
            return [p for p in (prose(path.read_bytes()) for _, path in held_out) if p]
        return [path.read_bytes() for rel, path in held_out if stdlib_kind(rel) == kind]
    named = gather_files(ev, "evals") if ev["source"] == "files" else _text_documents(ev["path"])
    docs = [path.read_bytes() for _, path in named]
    if data["source"] != "tokens":
        plan = _plan_split(data, _documents(data))["train"]
        train = {hashlib.sha256(path.read_bytes()[:n]).digest() for path, n in plan}
        copied = [n for (n, _), d in zip(named, docs) if d and hashlib.sha256(d).digest() in train]  # empty: no copy
        if copied:
            what = ev["path"] if ev["source"] != "files" else [*ev.get("roots", []), *ev.get("modules", [])]
            raise DataError(f"evaluation set {what!r}: {len(copied)} document(s) are identical to training documents "
                            f"(e.g. {', '.join(copied[:3])})")
    return docs


def load_eval(data: dict, name: str, ev: dict, cache_root: Path) -> np.ndarray:
    """The token array of one evaluation set, tokenized as the training data and cached beside its cache."""
    dtype = np.dtype(data["token_dtype"])
    if ev["source"] == "tokens":
        f = Path(ev["path"]).expanduser()
        if not f.is_file() or f.stat().st_size % dtype.itemsize:
            raise DataError(f"evals.{name}.path {ev['path']!r}: not a file of {data['token_dtype']} tokens")
        arr = np.memmap(f, dtype=dtype, mode="r")
        top, at = max_token(arr)  # every id, as the training splits are checked
        if top >= data["vocab_size"]:
            raise DataError(f"evals.{name}.path {ev['path']!r}: token id {top} at position {at} is >= "
                            f"data.vocab_size={data['vocab_size']}")
        return arr
    # the cache follows the set's content, as the training cache does (data_fingerprint): an edited set is re-read
    content = (files_fingerprint(gather_files(ev, f"evals.{name}"))["sha256"] if ev["source"] == "files"
               else data_fingerprint({"source": "text", "path": ev["path"]})["sha256"] if ev["source"] == "text"
               else None)
    key = hashlib.sha256(json.dumps({**ev, "python": sys.version.split()[0], "version": CACHE_VERSION,
                                     "content": content}, sort_keys=True).encode()).hexdigest()[:12]
    folder = Path(data.get("cache_dir") or cache_root) / cache_key(data)
    if data["source"] != "tokens":
        load_tokens(data, cache_root)  # the training cache (and its tokenizer) first
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / f"eval-{key}.bin"
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not out.exists():
            docs = _eval_documents(data, ev)
            if not docs:
                raise DataError(f"evals.{name}: the set {ev['source']!r} has no documents")
            if data["tokenizer"] == "byte":
                arr = _encode_bytes(docs)
            else:
                from tokenizers import Tokenizer

                arr = _encode_bpe(Tokenizer.from_file(str(folder / "tokenizer.json")), docs, dtype)
            arr.astype(dtype).tofile(f"{out}.tmp")
            os.replace(f"{out}.tmp", out)
    return np.memmap(out, dtype=dtype, mode="r")


# ----------------------------------------------------------------------------------------------------------------
# Batches


def check_length(tokens: np.ndarray, seq_len: int, split: str) -> None:
    if len(tokens) < seq_len + 2:
        raise DataError(f"the {split} split has {len(tokens)} tokens, fewer than seq_len+2={seq_len + 2}")


def step_starts(n_tokens: int, seq_len: int, n_seq: int, seed: int, step: int) -> np.ndarray:
    """Window starts of global step `step`: drawn from a generator seeded by (seed, step) alone, so the global batch
    is the same whatever the micro-batch size or the number of processes that split it."""
    rng = np.random.default_rng([seed, step])
    return rng.integers(0, n_tokens - seq_len - 1, size=n_seq)


def windows(tokens: np.ndarray, starts: np.ndarray, seq_len: int):
    """Inputs and next-token targets for the windows starting at `starts`: two (len(starts), seq_len) int64 tensors."""
    import torch  # here only: reading a corpus, counting its tokens and run ids need no torch (analysis install)

    window = torch.from_numpy(np.stack([np.asarray(tokens[s : s + seq_len + 1], dtype=np.int64) for s in starts]))
    return window[:, :-1], window[:, 1:]


def val_batches(tokens: np.ndarray, seq_len: int, batch_size: int, eval_tokens: int):
    """A fixed set of evenly spaced validation windows (the same for every run of a sweep), in micro-batches."""
    n_seq = max(1, eval_tokens // seq_len)
    starts = np.linspace(0, len(tokens) - seq_len - 1, num=n_seq).astype(np.int64)
    for i in range(0, n_seq, batch_size):
        yield windows(tokens, starts[i : i + batch_size], seq_len)

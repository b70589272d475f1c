"""The `files` data source: folders and installed packages gathered with include / exclude globs, a split by file,
a content fingerprint in the cache key, and refusals that name the sweep key."""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import yaml

from simplicial.data import (DataError, _is_validation, cache_key, files_fingerprint, gather_files, glob_regex,
                             load_tokens)
from sweeps.spec import SweepError, load_sweep

BASE = {"source": "files", "path": None, "tokenizer": "byte", "vocab_size": 256, "val_fraction": 0.2,
        "max_bytes": None, "token_dtype": "uint16", "cache_dir": None, "roots": [], "modules": [], "include": [],
        "exclude": []}


def _tree(root: Path) -> Path:
    """A small package-like folder: code, tests, a binary file, a nested folder."""
    files = {"pkg/__init__.py": "x = 1\n", "pkg/core.py": "def f():\n    return 2\n" * 40,
             "pkg/sub/util.py": "import os\n" * 30, "pkg/tests/test_core.py": "def test():\n    pass\n" * 20,
             "pkg/data.bin": "\x00\x01" * 50, "top.py": "print('top')\n" * 25, "README.md": "# readme\n" * 10}
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    for i in range(30):  # enough files that both splits get some at val_fraction 0.2
        (root / "pkg" / "many" / f"m{i:02d}.py").parent.mkdir(parents=True, exist_ok=True)
        (root / "pkg" / "many" / f"m{i:02d}.py").write_text(f"value_{i} = {i}\n" * (5 + i))
    return root


@pytest.mark.parametrize("pattern, yes, no", [
    ("**/*.py", ["a.py", "x/y/a.py"], ["a.pyc", "a.py/b"]),
    ("*.py", ["a.py"], ["x/a.py"]),
    ("**/test*/**", ["tests/a.py", "x/testing/y/z.py"], ["x/contest/a.py", "tests"]),
    ("pkg/**", ["pkg/a", "pkg/b/c"], ["pkg", "other/pkg/a"]),
    ("m[0-1]?.py", ["m01.py", "m1x.py"], ["m21.py", "m1.py"]),
    ("[!a]*", ["b", "cde"], ["abc"]),
])
def test_glob_semantics(pattern, yes, no):
    rx = glob_regex(pattern)
    assert all(rx.match(p) for p in yes), pattern
    assert not any(rx.match(p) for p in no), pattern


def test_gather_is_sorted_filtered_and_deduplicated(tmp_path):
    root = _tree(tmp_path / "corpus")
    data = {**BASE, "roots": [str(root / "pkg"), str(root)], "include": ["**/*.py"], "exclude": ["**/tests/**"]}
    docs = gather_files(data)
    names = [n for n, _ in docs]
    assert all(n.endswith(".py") for n in names) and not any("/tests/" in n for n in names)
    assert names[:-1] == sorted(names[:-1]) and all(n.startswith(f"{root}/pkg/") for n in names[:-1])
    assert names[-1] == f"{root}/top.py"  # the second root adds only what the first did not reach
    assert len({p.resolve() for _, p in docs}) == len(docs) == 34
    assert gather_files(data) == docs  # deterministic
    with pytest.raises(DataError, match=r"data.roots\[1\]: .* already gathered from an earlier root"):
        gather_files({**data, "roots": [str(root), str(root / "pkg")]})


def test_split_is_by_file_and_never_trains_on_validation(tmp_path):
    root = _tree(tmp_path / "corpus")
    data = {**BASE, "roots": [str(root)], "include": ["**/*.py"]}
    splits = load_tokens(data, tmp_path / "cache")
    train = bytes(np.asarray(splits.train, dtype=np.uint8))
    val = bytes(np.asarray(splits.val, dtype=np.uint8))
    held_out = [p for n, p in gather_files(data) if _is_validation(n, 0.2)]
    assert held_out and len(held_out) < 34
    for path in held_out:
        text = path.read_bytes()
        assert text in val and text not in train, path
    assert splits.description.startswith(f"files ({root}; sha256 ")


def test_modules_resolve_to_installed_folders(tmp_path):
    data = {**BASE, "modules": ["yaml"], "include": ["**/*.py"], "val_fraction": 0.3}
    docs = gather_files(data)
    folder = Path(importlib.util.find_spec("yaml").submodule_search_locations[0])
    assert docs and all(n.startswith("yaml/") for n, _ in docs)  # named by module, not by install location
    assert {p.parent for _, p in docs} == {folder}
    splits = load_tokens(data, tmp_path)
    assert "yaml " in splits.description  # the installed version is recorded
    assert b"import" in bytes(np.asarray(splits.train[:5000], dtype=np.uint8))


def test_fingerprint_and_cache_follow_the_content(tmp_path):
    root = _tree(tmp_path / "corpus")
    data = {**BASE, "roots": [str(root)], "include": ["**/*.py"]}
    before, key = files_fingerprint(gather_files(data)), cache_key(data)
    first = load_tokens(data, tmp_path / "cache")
    assert before["files"] == 35 and before["bytes"] == sum(p.stat().st_size for _, p in gather_files(data))
    core = root / "pkg" / "core.py"
    core.write_text(core.read_text().replace("return 2", "return 3"))  # same size, other content
    after = files_fingerprint(gather_files(data))
    assert after["bytes"] == before["bytes"] and after["sha256"] != before["sha256"]
    assert cache_key(data) != key
    second = load_tokens(data, tmp_path / "cache")  # rebuilt, not the stale cache
    assert b"return 3" in bytes(np.asarray(second.train, dtype=np.uint8)) + bytes(np.asarray(second.val, np.uint8))
    assert second.description != first.description
    # a copy elsewhere (another machine's install) fingerprints the same under a module-style label
    assert files_fingerprint([("m/a.py", core)]) == files_fingerprint([("m/a.py", Path(str(core)))])
    assert files_fingerprint([("m/a.py", core)])["sha256"] == hashlib.sha256(
        b"m/a.py\0" + str(core.stat().st_size).encode() + b"\0" + hashlib.sha256(core.read_bytes()).digest()).hexdigest()


def _sweep(tmp_path: Path, data: dict) -> Path:
    doc = {"name": "f", "architectures": {"dot": {"type": "dot"}}, "sizes": {"s": {"n_layers": 1, "d_model": 32,
           "n_heads": 2}}, "budgets": {"tokens": [1000]}, "data": data}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.mark.parametrize("data, key, words", [
    ({"roots": ["relative/dir"]}, "data.roots[0]", "not an absolute path"),
    ({"roots": ["{root}/missing"]}, "data.roots[0]", "no such file or folder"),
    ({"modules": ["yaml", "no_such_module_xyz"]}, "data.modules[1]", "no such module"),
    ({"roots": ["{root}"], "include": ["**/*.py", "**/*.rs"]}, "data.include[1]", "matches no file"),
    ({"roots": ["{root}"], "include": ["**/*.py"], "exclude": ["**/tests/**", "**/nothing/**"]}, "data.exclude[1]",
     "matches no file"),
    ({"roots": ["{root}", "{root}/pkg/tests"], "include": ["**/*.py"], "exclude": ["**/tests/**", "test_*"]},
     "data.roots[1]", "holds no file"),
    ({}, "data", "at least one of roots, modules"),
    ({"roots": ["{root}"], "path": "{root}"}, "data.path", "not path"),
    ({"roots": [""]}, "data.roots[0]", "non-empty string"),
])
def test_bad_files_source_is_refused_at_load(tmp_path, data, key, words):
    root = _tree(tmp_path / "corpus")
    data = {k: [v.format(root=root) for v in vs] if isinstance(vs, list) else vs.format(root=root)
            for k, vs in data.items()}
    path = _sweep(tmp_path, {"source": "files", **data})
    with pytest.raises(SweepError) as e:
        load_sweep(path)
    assert str(e.value).startswith(f"{path}: {key}: ") and words in str(e.value), str(e.value)


def test_files_keys_with_another_source_are_refused(tmp_path):
    path = _sweep(tmp_path, {"source": "python-stdlib", "include": ["**/*.py"]})
    with pytest.raises(SweepError, match=r"data.include: applies to source 'files' only"):
        load_sweep(path)


def test_good_files_sweep_loads(tmp_path):
    root = _tree(tmp_path / "corpus")
    spec = load_sweep(_sweep(tmp_path, {"source": "files", "roots": [str(root)], "modules": ["yaml"],
                                        "include": ["**/*.py"], "exclude": ["**/tests/**"]}))
    assert spec.data.roots == [str(root)] and spec.data.modules == ["yaml"]
    with pytest.raises(DataError, match=r"data.modules\[0\]"):
        gather_files({**BASE, "modules": ["no_such_module_xyz"]})


def test_files_evaluation_set(tmp_path):
    from simplicial.data import load_eval

    train_root, other = _tree(tmp_path / "corpus"), _tree(tmp_path / "other")
    (other / "pkg" / "core.py").write_text("def g():\n    return 'held out'\n" * 30)
    (other / "pkg" / "empty.py").write_text("")
    data = {**BASE, "roots": [str(train_root)], "include": ["**/*.py"]}
    ev = {"source": "files", "path": None, "roots": [str(other / "pkg")], "modules": [], "include": ["core.py"],
          "exclude": []}
    arr = load_eval(data, "other", ev, tmp_path / "cache")
    assert b"held out" in bytes(np.asarray(arr, dtype=np.uint8))
    # a file the training split also holds is refused by name; an empty one is no copy
    trained = next(p for n, p in gather_files(data) if not _is_validation(n, 0.2))
    (other / "pkg" / "copy.py").write_bytes(trained.read_bytes())
    copy = {**ev, "include": ["core.py", "copy.py", "empty.py"]}
    with pytest.raises(DataError, match=r"1 document\(s\) are identical to training documents \(e.g. .*pkg/copy.py\)"):
        load_eval(data, "copy", copy, tmp_path / "cache")
    # the set follows its content: an edit gives a new cached array
    (other / "pkg" / "core.py").write_text("def g():\n    return 'edited'\n" * 30)
    assert b"edited" in bytes(np.asarray(load_eval(data, "other", ev, tmp_path / "cache"), dtype=np.uint8))


def test_files_evaluation_keys_are_checked_at_load(tmp_path):
    root = _tree(tmp_path / "corpus")
    path = _sweep(tmp_path, {"source": "files", "roots": [str(root)], "include": ["**/*.py"]})
    doc = yaml.safe_load(path.read_text())
    doc["evals"] = {"held": {"source": "files", "roots": [str(root / "pkg")], "include": ["**/*.py", "**/*.rs"]}}
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(SweepError, match=r"evals.held.include\[1\]: '\*\*/\*.rs' matches no file"):
        load_sweep(path)
    doc["evals"] = {"held": {"source": "text", "path": str(root), "include": ["**/*.py"]}}
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(SweepError, match=r"evals.held.include: applies to source 'files' only"):
        load_sweep(path)

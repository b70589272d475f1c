"""Offline data: the standard-library corpus, text files, pre-tokenized arrays, byte and BPE tokenizers, the cache."""

from __future__ import annotations

import numpy as np
import pytest

from simplicial.data import DataError, cache_key, load_tokens, val_batches, windows

BASE = {"source": "python-stdlib", "path": None, "tokenizer": "byte", "vocab_size": 256, "val_fraction": 0.05,
        "max_bytes": 300_000, "token_dtype": "uint16", "cache_dir": None}


def test_stdlib_bytes_split_and_cache(tmp_path):
    splits = load_tokens(BASE, tmp_path)
    assert splits.vocab_size == 256 and splits.tokenizer == "byte"
    assert 0.02 < len(splits.val) / (len(splits.train) + len(splits.val)) < 0.1
    assert int(splits.train.max()) < 256
    assert b"def " in bytes(np.asarray(splits.train[:20000], dtype=np.uint8))  # it is Python source
    folder = tmp_path / cache_key(BASE)
    stamp = (folder / "meta.json").stat().st_mtime_ns
    again = load_tokens(BASE, tmp_path)  # from the cache, not rebuilt
    assert (folder / "meta.json").stat().st_mtime_ns == stamp
    assert np.array_equal(np.asarray(again.val), np.asarray(splits.val))


def test_text_file_with_bpe(tmp_path):
    text = tmp_path / "corpus.txt"
    text.write_text("the quick brown fox jumps over the lazy dog. " * 400 + "pack my box with five dozen jugs. " * 400)
    data = {**BASE, "source": "text", "path": str(text), "tokenizer": "bpe", "vocab_size": 300, "max_bytes": None}
    splits = load_tokens(data, tmp_path / "cache")
    assert splits.tokenizer == "bpe" and (tmp_path / "cache" / cache_key(data) / "tokenizer.json").exists()
    assert int(max(splits.train.max(), splits.val.max())) < 300
    assert len(splits.train) < 0.95 * len(text.read_bytes())  # merges compress the text
    x, y = windows(splits.train, np.array([0, 5]), 8)
    assert x.shape == (2, 8) and np.array_equal(x[:, 1:].numpy(), y[:, :-1].numpy())


def test_pretokenized_arrays(tmp_path):
    rng = np.random.default_rng(0)
    for name, n in (("train", 5000), ("val", 600)):
        rng.integers(0, 1000, n).astype(np.uint32).tofile(tmp_path / f"{name}.bin")
    data = {**BASE, "source": "tokens", "path": str(tmp_path), "vocab_size": 1000, "token_dtype": "uint32"}
    splits = load_tokens(data, tmp_path / "cache")
    assert len(splits.train) == 5000 and splits.train.dtype == np.uint32
    batches = list(val_batches(splits.val, 16, 4, 160))
    assert sum(len(x) for x, _ in batches) == 10


def test_bad_data_is_named(tmp_path):
    with pytest.raises(DataError, match="no such file or folder"):
        load_tokens({**BASE, "source": "text", "path": str(tmp_path / "missing")}, tmp_path)
    (tmp_path / "tok").mkdir()
    np.arange(10, dtype=np.uint16).tofile(tmp_path / "tok" / "train.bin")
    with pytest.raises(DataError, match="missing val.bin"):
        load_tokens({**BASE, "source": "tokens", "path": str(tmp_path / "tok")}, tmp_path)
    np.array([5, 300], dtype=np.uint16).tofile(tmp_path / "tok" / "val.bin")
    with pytest.raises(DataError, match="token id 300 at position 1 >= data.vocab_size=256"):
        load_tokens({**BASE, "source": "tokens", "path": str(tmp_path / "tok")}, tmp_path)

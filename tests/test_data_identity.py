"""The data a run trains on is part of what the run is (issue 28): a changed corpus gives a new cache and new run
ids, finished runs of the old corpus show as stale, and bad data stops the launcher before anything is submitted."""

from __future__ import annotations

import json

import numpy as np
import pytest

from simplicial.data import DataError, cache_key, load_tokens
from sweeps import expand, load_sweep
from sweeps.cli import main
from tests.conftest import write_sweep

WORDS = b"the quick brown fox jumps over the lazy dog while a cat sleeps by the warm fire\n"


def _sweep(tmp_path, data: str, budgets: str = "2560"):
    path = write_sweep(tmp_path, budgets=budgets)
    path.write_text(path.read_text().replace("  source: python-stdlib\n  max_bytes: 400000\n", data))
    return path


def _text_sweep(tmp_path, corpus):
    return _sweep(tmp_path, f"  source: text\n  path: {corpus}\n")


def _finish(run) -> None:
    """A run folder as the trainer leaves it when done."""
    run.paths.root.mkdir(parents=True, exist_ok=True)
    run.paths.config.write_text(json.dumps(run.to_dict()))
    run.paths.result.write_text(json.dumps({"run_id": run.run_id, "status": "done", "val_loss": 2.5}))


def test_editing_the_corpus_gives_new_runs_and_marks_old_ones_stale(tmp_path, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_bytes(WORDS * 4000)  # 320 kB
    path = _text_sweep(tmp_path, corpus)
    before = expand(load_sweep(path))
    _finish(before[0])
    key_before = cache_key(before[0].data)
    corpus.write_bytes(WORDS * 700)  # shrunk to 56 kB: it used to train as 320 kB under the same ids
    after = expand(load_sweep(path))
    assert {r.run_id for r in before}.isdisjoint(r.run_id for r in after)
    assert cache_key(after[0].data) != key_before
    capsys.readouterr()
    main(["status", str(path)])
    out = capsys.readouterr().out
    assert "stale: 1 finished run(s)" in out and before[0].run_id in out, out
    assert "done" not in out.split("stale:")[0].split("sweep tiny:")[1], out  # not counted as done


def test_same_size_edit_is_noticed_and_a_job_refuses_a_changed_corpus(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_bytes(WORDS * 4000)
    run = expand(load_sweep(_text_sweep(tmp_path, corpus)))[0]
    corpus.write_bytes(WORDS.replace(b"fox", b"cow") * 4000)  # same size, other words
    assert expand(load_sweep(_text_sweep(tmp_path, corpus)))[0].run_id != run.run_id
    with pytest.raises(DataError, match="the corpus changed after this run was launched"):
        load_tokens(run.data, tmp_path / "cache")


def _tokens(folder, train, val, dtype=np.uint16):
    folder.mkdir(parents=True, exist_ok=True)
    np.asarray(train, dtype=dtype).tofile(folder / "train.bin")
    np.asarray(val, dtype=dtype).tofile(folder / "val.bin")


def test_every_token_id_is_checked_against_the_vocabulary(tmp_path):
    """Ids past the first 2^20 tokens were never checked: a bad one failed hours into training."""
    train = np.zeros((1 << 20) + 100, dtype=np.uint16)
    train[-3] = 4000
    _tokens(tmp_path / "tok", train, np.zeros(5000))
    data = {"source": "tokens", "path": str(tmp_path / "tok"), "token_dtype": "uint16", "vocab_size": 256}
    with pytest.raises(DataError, match=f"train.bin: token id 4000 at position {len(train) - 3:,} >= "
                                        "data.vocab_size=256"):
        load_tokens(data, tmp_path)


@pytest.mark.parametrize("setup, words", [
    (lambda d: None, "data.path: 'TOK': no such folder"),
    (lambda d: d.mkdir(), "missing train.bin"),
    (lambda d: (_tokens(d, np.zeros(5000), np.zeros(5000)), (d / "val.bin").write_bytes(b"\0" * 1001)),
     "val.bin: size 1001 is not a multiple of uint16"),
    (lambda d: _tokens(d, np.zeros(5000), np.zeros(20)), "the validation split has 20 tokens, fewer than"),
    (lambda d: _tokens(d, np.zeros(5000), [1, 2, 999] * 100), "val.bin: token id 999 at position 2"),
])
def test_data_problems_stop_the_launch_before_submission(tmp_path, capsys, setup, words):
    folder = tmp_path / "tok"
    setup(folder)
    path = _sweep(tmp_path, f"  source: tokens\n  path: {folder}\n")
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and words.replace("TOK", str(folder)) in err, err
    assert not (tmp_path / "out" / "tiny" / "journal.jsonl").exists()  # nothing was submitted


def test_text_problems_stop_the_launch(tmp_path, capsys):
    path = _text_sweep(tmp_path, tmp_path / "missing.txt")
    assert main(["run", str(path)]) == 2
    assert "data.path: " in capsys.readouterr().err
    short = tmp_path / "short.txt"
    short.write_bytes(b"x" * 600)  # 30 validation bytes < seq_len + 2
    assert main(["run", str(_text_sweep(tmp_path, short))]) == 2
    assert "the validation split has 30 tokens, fewer than training.seq_len + 2 = 34" in capsys.readouterr().err
    bpe = _sweep(tmp_path, "  source: python-stdlib\n  tokenizer: bpe\n  vocab_size: 200\n")
    assert main(["run", str(bpe)]) == 2
    assert "data.vocab_size: byte-level BPE needs at least its 256 byte symbols" in capsys.readouterr().err

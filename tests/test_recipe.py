"""Scaling-law-grade grids: guards that keep the comparison meaningful, per-size recipes, the learning-rate axis,
seeds that replicate (common batches across architectures)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

import pytest
import yaml

from simplicial.data import load_tokens, train_token_count
from sweeps import SweepError, expand, parse_sweep
from sweeps.grid import check_epochs, data_epochs, simplicial_blocks
from sweeps.state import run_states
from tests.conftest import TINY_SWEEP


def _raw(tmp_path=None, budgets="2560", **over):
    raw = yaml.safe_load(TINY_SWEEP.format(output=str(tmp_path or "/tmp/x"), executor="local", budgets=budgets))
    for dotted, value in over.items():
        node, keys = raw, dotted.split("__")
        for k in keys[:-1]:
            node = node.setdefault(k, {})
        if value is KeyError:
            del node[keys[-1]]
        else:
            node[keys[-1]] = value
    return raw


# -- guards ------------------------------------------------------------------------------------------------------


def test_simplicial_arch_without_a_simplicial_block_is_refused():
    with pytest.raises(SweepError) as err:
        parse_sweep(_raw(architectures__simplicial__every=4), "sweeps/x.yaml")
    msg = str(err.value)
    assert msg.startswith("sweeps/x.yaml: architectures.simplicial.every:"), msg
    assert "every=4" in msg and "size 'a' (2 layers)" in msg and "no 2-simplicial block" in msg
    spec = parse_sweep(_raw(architectures__simplicial__every=2))
    assert [simplicial_blocks(r.model_config) for r in expand(spec)] == [0, 0, 1, 1]


def test_params_size_out_of_the_family_reach_is_refused():
    # the family has 49,344 (1 layer) and 393,728 (2 layers) non-embedding parameters: 1.5e5 is far from both
    with pytest.raises(SweepError) as err:
        parse_sweep(_raw(sizes={"a": {"params": 1.5e5}}), "sweeps/x.yaml")
    msg = str(err.value)
    assert msg.startswith("sweeps/x.yaml: sizes.a.params:") and "tolerance 0.25" in msg, msg
    assert "49,344" in msg and "393," in msg
    spec = parse_sweep(_raw(sizes={"a": {"params": 4.0e5}}))  # within 25% of the 2-layer member
    assert expand(spec)[0].model["n_layers"] == 2
    spec = parse_sweep(_raw(sizes={"a": {"params": 1.5e5, "tolerance": 3.0}}))  # a looser stated tolerance
    assert expand(spec)[0].params["params_non_embedding"] == 393_856  # the 2-layer member is nearer in log


def test_unique_training_tokens_are_counted_exactly_without_building(tmp_path):
    spec = parse_sweep(_raw(tmp_path))
    data = dataclasses.asdict(spec.data)
    cache = tmp_path / "cache"
    planned = train_token_count(data, cache)
    assert not cache.exists()  # counted from file sizes: nothing built
    assert planned == len(load_tokens(data, cache).train)
    assert train_token_count(data, cache) == planned  # from the cache's metadata now


def test_epochs_warn_above_one_and_refuse_above_max_epochs(tmp_path):
    # 400 kB of corpus, 95% train: about 380k unique tokens; budgets of 0.5M and 2M tokens
    spec = parse_sweep(_raw(tmp_path, budgets="5e5, 2e6"), "sweeps/x.yaml")
    runs = [r for r in expand(spec) if r.arch == "dot" and r.size == "a"]
    epochs = data_epochs(spec, runs)
    assert 1 < epochs[0] < 2 and 4 < epochs[1] < 6, epochs
    with pytest.raises(SweepError) as err:
        check_epochs(spec, runs, epochs)
    assert str(err.value).startswith("sweeps/x.yaml: data.max_epochs:") and "max_epochs=4" in str(err.value)
    spec = parse_sweep(_raw(tmp_path, budgets="5e5, 2e6", data__max_epochs=8))
    warnings = check_epochs(spec, runs, epochs)
    assert len(warnings) == 2 and all("> 1 epoch" in w for w in warnings)
    default = parse_sweep(_raw(tmp_path, budgets="5e5, 2e6"))
    assert [r.run_id for r in expand(spec)] == [r.run_id for r in expand(default)]  # max_epochs is not in ids


# -- seeds -------------------------------------------------------------------------------------------------------


def test_seeds_replicate_init_and_data_order_with_common_batches_across_archs(tmp_path):
    import numpy as np
    import torch

    from simplicial.distributed import DistInfo
    from simplicial.train import Trainer

    spec = parse_sweep(_raw(tmp_path, seeds=[0, 1, 2]))
    runs = expand(spec)
    assert len(runs) == 2 * 2 * 1 * 3 and sorted({r.seed for r in runs}) == [0, 1, 2]
    assert len({r.run_id for r in runs}) == len(runs) and all(f"-s{r.seed}-" in r.run_id for r in runs)
    pick = {(r.arch, r.size, r.seed): r for r in runs}
    cpu = torch.device("cpu")
    t = {key: Trainer(pick[key], DistInfo(), cpu) for key in
         [("dot", "a", 0), ("simplicial", "a", 0), ("dot", "b", 0), ("dot", "a", 1)]}
    for step in (0, 1, 7):
        same = [t[k].batch_starts(100_000, step) for k in [("dot", "a", 0), ("simplicial", "a", 0), ("dot", "b", 0)]]
        assert all(np.array_equal(same[0], s) for s in same[1:])  # one seed: one data order for every arch and size
        assert not np.array_equal(same[0], t[("dot", "a", 1)].batch_starts(100_000, step))  # another seed: another
    def emb(trainer):
        return trainer.model.embed.weight.detach()

    again = Trainer(pick[("dot", "a", 0)], DistInfo(), cpu)
    assert torch.equal(emb(again), emb(t[("dot", "a", 0)]))  # a seed replicates its init
    assert not torch.equal(emb(t[("dot", "a", 1)]), emb(t[("dot", "a", 0)]))  # and another seed changes it


# -- recipes -----------------------------------------------------------------------------------------------------


def _cells(spec):
    return {(r.arch, r.size, r.tokens, r.lr_mult, r.seed): r for r in expand(spec)}


def test_training_overrides_most_specific_wins():
    spec = parse_sweep(_raw(architectures__simplicial__training={"lr": 1e-3, "warmup_fraction": 0.2},
                            sizes__b__training={"lr": 5e-4, "min_lr_ratio": 0.0}))
    got = {(r.arch, r.size): r.training for r in expand(spec)}
    assert got[("dot", "a")]["lr"] == 3e-3 and got[("dot", "a")]["warmup_fraction"] == 0.05  # the sweep's
    assert got[("simplicial", "a")]["lr"] == 1e-3 and got[("simplicial", "a")]["warmup_fraction"] == 0.2  # arch
    assert got[("dot", "b")]["lr"] == 5e-4 and got[("dot", "b")]["min_lr_ratio"] == 0.0  # size
    assert got[("simplicial", "b")]["lr"] == 5e-4 and got[("simplicial", "b")]["warmup_fraction"] == 0.2  # both
    plain = {(r.arch, r.size): r.run_id for r in expand(parse_sweep(_raw()))}
    ids = {(r.arch, r.size): r.run_id for r in expand(spec)}
    assert ids[("dot", "a")] == plain[("dot", "a")] and ids[("dot", "b")] != plain[("dot", "b")]


def test_deepseek_rule_sets_lr_and_batch_from_compute_and_explicit_settings_win():
    from sweeps.recipe import deepseek_llm, rule_compute

    lr, batch = deepseek_llm(1e20)
    assert abs(lr - 0.3118 * 1e20 ** -0.125) < 1e-15 and 3e5 < batch < 1e7  # DeepSeek's 1e20 regime: ~4M tokens
    spec = parse_sweep(_raw(budgets="1e5, 4e5", training__scaling_rule="deepseek-llm", training__lr=KeyError,
                            training__batch_tokens=KeyError, sizes__b__training={"lr": 1e-3}))
    runs = expand(spec)
    dot = {(r.size, r.budget["tokens"]): r for r in runs if r.arch == "dot"}
    for r in runs:
        # every architecture of a cell at the dot model's compute, the least of the cell's (sweeps/recipe.py)
        ref = dot[r.size, r.budget["tokens"]]
        assert rule_compute(ref.model_config, r.budget["tokens"]) < rule_compute(
            r.model_config, r.budget["tokens"]) or r.arch == "dot"
        exp_lr, exp_batch = deepseek_llm(rule_compute(ref.model_config, r.budget["tokens"]))
        assert r.training["batch_tokens"] % 32 == 0 and abs(r.training["batch_tokens"] - exp_batch) <= 16
        assert r.training["lr"] == (1e-3 if r.size == "b" else pytest.approx(exp_lr, rel=1e-3))
        assert r.tokens % r.training["batch_tokens"] == 0
        # so both architectures of a cell take the same steps over the same batches
        assert (r.training["batch_tokens"], r.tokens) == (ref.training["batch_tokens"], ref.tokens)
        if r.size == "a":
            assert r.training["lr"] == ref.training["lr"]
    a = sorted((r for r in runs if (r.arch, r.size) == ("dot", "a")), key=lambda r: r.tokens)
    assert a[1].training["lr"] < a[0].training["lr"] and a[1].training["batch_tokens"] > a[0].training["batch_tokens"]


def test_deepseek_rule_with_flop_budgets_shares_the_cells_recipe():
    """With FLOP budgets each architecture trains the tokens its budget buys (fewer for the costlier 2-simplicial
    model); the cell's recipe is still one: the least compute of the cell's architectures."""
    from sweeps.recipe import deepseek_llm, rule_compute

    spec = parse_sweep(_raw(budgets__tokens=KeyError, training__scaling_rule="deepseek-llm", training__lr=KeyError,
                            training__batch_tokens=KeyError, **{"budgets__flops": [2e9, 8e9]}))
    runs = expand(spec)
    for size in ("a", "b"):
        for flops in (2e9, 8e9):
            cell = {r.arch: r for r in runs if r.size == size and r.budget["flops"] == flops}
            assert cell["dot"].tokens > cell["simplicial"].tokens
            least = min(rule_compute(r.model_config, flops / (r.flops / r.tokens)) for r in cell.values())
            lr, _ = deepseek_llm(least)
            assert cell["dot"].training["lr"] == cell["simplicial"].training["lr"] == pytest.approx(lr, rel=1e-3)
            assert cell["dot"].training["batch_tokens"] == cell["simplicial"].training["batch_tokens"]


@pytest.mark.parametrize("over, key, words", [
    ({"training__scaling_rule": "olmo"}, "training.scaling_rule", "must be one of none, deepseek-llm"),
    ({"training__scaling_rule": "deepseek-llm", "training__lr": 1e-3}, "training.lr", "conflicts with scaling_rule"),
    ({"sizes__a__training": {"seed": 3}}, "sizes.a.training.seed", "seeds are sweep-wide"),
    ({"sizes__a__training": {"lr": -1.0}}, "sizes.a.training.lr", "must be > 0"),
    ({"sizes__a__training": {"lrr": 1.0}}, "sizes.a.training.lrr", "unknown key"),
    ({"architectures__dot__training": {"batch_tokens": 100}}, "architectures.dot.training.batch_tokens",
     "not a multiple of seq_len"),
    ({"sizes__a__training": {"lr_multipliers": [0.5, 0.5]}}, "sizes.a.training.lr_multipliers", "duplicates"),
    ({"training__lr_multipliers": [0.0, 1.0]}, "training.lr_multipliers[0]", "must be > 0"),
])
def test_bad_recipes_name_key(over, key, words):
    with pytest.raises(SweepError) as err:
        parse_sweep(_raw(**over), "sweeps/x.yaml")
    msg = str(err.value)
    assert msg.startswith(f"sweeps/x.yaml: {key}:") and words in msg, msg


@pytest.mark.parametrize("over, key, words", [
    ({"sizes__a__training": {"lr_tuning_seeds": [7]}}, "sizes.a.training.lr_tuning_seeds[0]",
     "7 is not one of the sweep's seeds [0, 1]"),
    ({"training__lr_tuning_seeds": [0, 1]}, "training.lr_tuning_seeds", "names every seed [0, 1]"),
    ({"training__lr_tuning_seeds": [0, 0]}, "training.lr_tuning_seeds", "duplicates"),
])
def test_bad_lr_tuning_seeds_name_key(over, key, words):
    with pytest.raises(SweepError) as err:
        parse_sweep(_raw(seeds=[0, 1], **over), "sweeps/x.yaml")
    msg = str(err.value)
    assert msg.startswith(f"sweeps/x.yaml: {key}:") and words in msg, msg


def _result(run, status: str, val_loss: float | None) -> None:
    run.run_dir.mkdir(parents=True, exist_ok=True)
    (run.run_dir / "result.json").write_text(json.dumps({"status": status, "val_loss": val_loss}))


def test_replicate_seeds_wait_for_the_tuning_then_train_only_its_winner(tmp_path):
    """lr_tuning_seeds: the tuning seed sweeps the axis; the replicates wait, then only the multiplier of lowest
    validation loss at the largest budget (mean over tuning seeds) trains; the ids are those of the plain axis."""
    over = dict(seeds=[0, 1, 2], sizes__a__training={"lr_multipliers": [0.5, 1, 2], "lr_tuning_seeds": [0]})
    spec = parse_sweep(_raw(tmp_path, budgets="2560, 5120", **over))
    runs = expand(spec)
    plain = expand(parse_sweep(_raw(tmp_path, budgets="2560, 5120", seeds=[0, 1, 2],
                                    sizes__a__training={"lr_multipliers": [0.5, 1, 2]})))
    assert [r.run_id for r in runs] == [r.run_id for r in plain]  # which runs train is not what a run is

    def states():
        return {r.run_id: st for r, st in zip(runs, run_states(runs, spec.sweep_dir, query_scheduler=False))}

    a = [r for r in runs if r.size == "a"]
    replicas = [r for r in a if r.seed != 0]
    st = states()
    assert {st[r.run_id].status for r in replicas} == {"awaiting-lr"}
    assert all(st[r.run_id].to_run for r in runs if r not in replicas)  # tuning runs and size b's run
    assert "3 of 3 tuning run(s) at 5,120 tokens still to finish" in st[replicas[0].run_id].error

    top = {(r.arch, r.lr_mult): r for r in a if r.seed == 0 and r.tokens == 5120}
    for (arch, mult), run in top.items():  # dot: x2 wins; simplicial: x1 diverged, x0.5 wins
        if arch == "dot":
            _result(run, "done", {0.5: 2.3, 1.0: 2.2, 2.0: 2.1}[mult])
        elif mult != 1.0:
            _result(run, "done", {0.5: 2.0, 2.0: 2.4}[mult])
        else:
            _result(run, "diverged", None)
    st = states()
    for r in replicas:
        want = 2.0 if r.arch == "dot" else 0.5
        if r.lr_mult == want:
            assert st[r.run_id].status == "pending" and st[r.run_id].to_run, r.run_id
        else:
            assert st[r.run_id].status == "not-tuned" and st[r.run_id].finished and not st[r.run_id].to_run
            assert f"x{want:g} has the lowest validation loss of seed(s) [0]" in st[r.run_id].error
    # a replicate that already trained keeps its result, whatever won
    loser = next(r for r in replicas if r.arch == "dot" and r.lr_mult == 0.5)
    _result(loser, "done", 2.25)
    assert states()[loser.run_id].status == "done"
    # every multiplier diverged: nothing to replicate
    for run in (r for r in top.values() if r.arch == "simplicial"):
        _result(run, "diverged", None)
    st = states()
    assert all(st[r.run_id].status == "not-tuned" and "diverged" in st[r.run_id].error
               for r in replicas if r.arch == "simplicial")


def test_lr_axis_trains_every_cell_at_each_multiplier():
    spec = parse_sweep(_raw(seeds=[0, 1], sizes__a__training={"lr_multipliers": [0.5, 1, 2]}))
    runs = expand(spec)
    a = [r for r in runs if r.size == "a"]
    assert len(a) == 2 * 3 * 2 and len([r for r in runs if r.size == "b"]) == 2 * 2  # b: no axis
    assert sorted({r.training["lr"] for r in a}) == [1.5e-3, 3e-3, 6e-3]
    assert all(f"-lr{r.lr_mult:g}x-" in r.run_id for r in a)
    assert not any("-lr" in r.run_id for r in runs if r.size == "b")


# -- the LR axis through collect, fitting and the report ---------------------------------------------------------


def _lr_table():
    """A results table of an LR axis: 2 archs x 2 sizes x 3 budgets x 3 lrs, loss a bowl in log lr whose minimum
    is at the middle lr except for simplicial/s2, whose best sits at the high edge."""
    import math

    import numpy as np
    import pandas as pd

    from sweeps.collect import COLUMNS, mark_best_lr

    rows = []
    for arch in ("dot", "simplicial"):
        for size, n in (("s1", 1e5), ("s2", 4e5)):
            for d in (1e6, 2e6, 4e6):
                for mult in (0.5, 1.0, 2.0):
                    opt = 2.0 if (arch, size) == ("simplicial", "s2") else 1.0
                    loss = 1.5 + 30 / n ** 0.3 + 40 / d ** 0.3 + 0.2 * math.log(mult / opt) ** 2
                    rows.append({"run_id": f"{arch}-{size}-{d:g}-lr{mult:g}x", "arch": arch, "size": size, "seed": 0,
                                 "status": "done", "params": n, "tokens": d, "flops": 6 * n * d, "loss": loss,
                                 "val_loss": loss, "budget_tokens": d, "lr": 3e-3 * mult, "lr_mult": mult})
    rows.append({**rows[0], "run_id": "dot-s1-failed", "status": "failed", "loss": None, "val_loss": None,
                 "lr": 1e-1, "lr_mult": 33.0})  # a failed run: never best, but part of the swept range
    return mark_best_lr(pd.DataFrame(rows, columns=COLUMNS)), np


def test_collect_marks_the_best_lr_per_cell_and_the_edge():
    table, np = _lr_table()
    best = table[table["best_lr"]]
    assert len(best) == 2 * 2 * 3  # one per (arch, size, budget, seed) cell
    assert set(best.loc[best["arch"] + best["size"] != "simplicials2", "lr_mult"]) == {1.0}
    assert set(best.loc[best["arch"] + best["size"] == "simplicials2", "lr_mult"]) == {2.0}
    assert set(best.loc[best["lr_at_edge"], "arch"] + best.loc[best["lr_at_edge"], "size"]) == {"simplicials2"}
    assert not table.loc[table["status"] != "done", "best_lr"].any()


def test_fits_use_the_best_lr_by_default_and_all_with_all_lr(tmp_path):
    from fitting.cli import main as fitting_main
    from fitting.data import read_table

    table, _ = _lr_table()
    csv = tmp_path / "results.csv"
    table.to_csv(csv, index=False)
    t = read_table(str(csv))
    assert len(t.df) == 12 and t.df["best_lr"].all() and any("best learning rate" in n for n in t.notes)
    assert any(n.startswith("WARNING the fitted rows are each cell's best lr on an lr axis") for n in t.notes)
    # simplicial s2's best lr is 2x, dot's 1x: their offsets differ there and reach the exponents' difference
    assert [n for n in t.notes if "best lr differ" in n] == [n for n in t.notes if "best lr differ at size(s) s2:" in n]
    assert any("best lr differ at size(s) s2:" in n for n in t.notes)
    agree = table.assign(best_lr=table["best_lr"] & (table["arch"] + table["size"] != "simplicials2")
                         | (table["arch"] + table["size"] + table["lr_mult"].astype(str) == "simplicials21.0"))
    notes = read_table(agree).notes
    assert any("on an lr axis" in n for n in notes) and not any("best lr differ" in n for n in notes)
    one_lr = table[table["lr_mult"] == 1.0]
    assert not any("lr axis" in n for n in read_table(one_lr).notes)  # no axis, no offsets to warn of
    assert len(read_table(str(csv), best_lr_only=False).df) == 36
    rc = fitting_main(["fixed-budget", str(csv), "--json", str(tmp_path / "fb.json")])
    assert rc == 0
    import json

    points = [g["n_points"] for g in json.loads((tmp_path / "fb.json").read_text())["fixed_tokens"]["dot"]]
    assert points == [2, 2, 2]  # two sizes per budget, each at its best lr
    rc = fitting_main(["fixed-budget", str(csv), "--all-lr", "--json", str(tmp_path / "fb_all.json")])
    points = [g["n_points"] for g in json.loads((tmp_path / "fb_all.json").read_text())["fixed_tokens"]["dot"]]
    assert rc == 0 and points == [6, 6, 6]


def test_report_has_a_loss_vs_lr_page_that_flags_edges(tmp_path):
    from reports import figures
    from reports.inputs import ReportInputs

    table, _ = _lr_table()
    inputs = ReportInputs(results=table, results_path=tmp_path / "results.csv")
    assert len(inputs.done) == 12  # the fit pages plot the best lr of each cell only
    pages = figures.loss_vs_lr(inputs)
    assert len(pages) == 1
    texts = [t.get_text() for t in pages[0].texts]
    assert any("3 cell(s) with the best lr at the edge" in t and "simplicial/s2" in t for t in texts), texts
    no_axis = table[table["lr_mult"] == 1.0]
    assert figures.loss_vs_lr(ReportInputs(results=no_axis, results_path=tmp_path / "r.csv")) == []


# -- evaluation sets ---------------------------------------------------------------------------------------------


def test_builtin_eval_sets_are_held_out_documents_by_kind():
    from simplicial.data import _eval_documents, _is_validation, _plan_split, _stdlib_documents, prose, stdlib_kind

    data = {"source": "python-stdlib", "val_fraction": 0.05, "max_bytes": None}
    docs = _stdlib_documents()
    trained = {p for p, _ in _plan_split(data, docs)["train"]}
    held = [(rel, p) for rel, p in docs if _is_validation(rel, 0.05)]
    assert held and not trained & {p for _, p in held}  # no held-out document is in the train split
    by_kind = {k: _eval_documents(data, {"source": f"stdlib-{k}", "path": None}) for k in ("code", "tests", "prose")}
    assert all(by_kind.values())
    assert len(by_kind["code"]) + len(by_kind["tests"]) == len(held)
    assert stdlib_kind("test/test_os.py") == "tests" and stdlib_kind("os.py") == "code"
    assert prose(b'def f():\n    """Read a buffer"""\n    return 1  # one\n') == b"Read a buffer\n\none"


def _text_corpus(tmp_path, docs: int, repeat: int) -> dict:
    """A `text` data section over `docs` small byte-level documents ("document i " repeated) under tmp_path."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(docs):
        (corpus / f"doc{i}.txt").write_text(f"document {i} " * repeat)
    return {"source": "text", "path": str(corpus), "tokenizer": "byte", "vocab_size": 256, "val_fraction": 0.1,
            "max_bytes": None, "token_dtype": "uint16", "cache_dir": None}


def test_text_eval_set_identical_to_a_training_document_is_refused(tmp_path):
    from simplicial.data import DataError, load_eval

    data = _text_corpus(tmp_path, docs=40, repeat=200)
    from simplicial.data import _is_validation

    trained = next(i for i in range(40) if not _is_validation(f"doc{i}.txt", 0.1))
    (tmp_path / "ev.txt").write_text(f"document {trained} " * 200)
    with pytest.raises(DataError, match="identical to training documents"):
        load_eval(data, "copy", {"source": "text", "path": str(tmp_path / "ev.txt")}, tmp_path / "cache")
    (tmp_path / "fresh.txt").write_text("something never trained on " * 50)
    arr = load_eval(data, "fresh", {"source": "text", "path": str(tmp_path / "fresh.txt")}, tmp_path / "cache")
    assert bytes(np.asarray(arr, dtype=np.uint8)).startswith(b"something never")


def test_edited_text_eval_set_is_read_again(tmp_path):
    """The eval cache follows the set's content: an edited `text` set was served from its old tokens."""
    from simplicial.data import load_eval

    data = _text_corpus(tmp_path, docs=10, repeat=100)
    ev = {"source": "text", "path": str(tmp_path / "ev.txt")}
    (tmp_path / "ev.txt").write_text("first version " * 50)
    first = bytes(np.asarray(load_eval(data, "ev", ev, tmp_path / "cache"), dtype=np.uint8))
    (tmp_path / "ev.txt").write_text("second, longer version " * 80)
    second = bytes(np.asarray(load_eval(data, "ev", ev, tmp_path / "cache"), dtype=np.uint8))
    assert first.startswith(b"first version") and second.startswith(b"second, longer version")


@pytest.mark.parametrize("over, key, words", [
    ({"evals": {"code": {"source": "stdlib-poetry"}}}, "evals.code.source", "must be one of"),
    ({"evals": {"val": {"source": "stdlib-code"}}}, "evals.val", "names must be identifiers"),
    ({"evals": {"w": {"source": "text"}}}, "evals.w.path", "needs a path"),
    ({"evals": {"w": {"source": "text", "path": "/no/such/file"}}}, "evals.w.path", "no such file"),
])
def test_bad_eval_sets_name_key(over, key, words):
    with pytest.raises(SweepError) as err:
        parse_sweep(_raw(**over), "sweeps/x.yaml")
    assert str(err.value).startswith(f"sweeps/x.yaml: {key}:") and words in str(err.value), str(err.value)


def test_eval_sets_reach_result_collect_and_fitting(tmp_path):
    import json

    from fitting.data import read_table
    from simplicial.train import train_run
    from sweeps.collect import results_table

    spec = parse_sweep(_raw(tmp_path, budgets="1280, 2560", evals={
        "code": {"source": "stdlib-code"}, "tests": {"source": "stdlib-tests"}, "prose": {"source": "stdlib-prose"}},
        training__eval_every=2))
    runs = [r for r in expand(spec) if r.arch == "dot"]
    plain = parse_sweep(_raw(tmp_path, budgets="1280, 2560", training__eval_every=2))
    assert runs[0].run_id == expand(plain)[0].run_id  # evaluation sets are not part of the id
    for run in runs:
        result = train_run(dataclasses.replace(run, training={**run.training, "threads": 1}))
        assert result["status"] == "done" and set(result["eval_losses"]) == {"code", "tests", "prose"}
    on_disk = json.loads((runs[0].run_dir / "result.json").read_text())
    assert all(0 < v < 6 for v in on_disk["eval_losses"].values())
    rows = [json.loads(l) for l in (runs[0].run_dir / "metrics.jsonl").read_text().splitlines()]
    assert any("loss_prose" in r for r in rows[:-1]) and "loss_prose" in rows[-1]  # every eval_every, and the end
    table = results_table(runs, spec.sweep_dir)
    for name in ("code", "tests", "prose"):
        assert table[f"loss_{name}"].notna().all()
    assert len(set(table[["loss_code", "loss_tests", "loss_prose"]].iloc[0])) == 3  # three domains, three losses
    t = read_table(table, loss_col="loss_prose")
    assert list(t.df["L"]) == list(table["loss_prose"])


def test_report_compares_architectures_per_eval_set(tmp_path):
    import pandas as pd

    from reports import figures
    from reports.inputs import ReportInputs, eval_sets

    rows = []
    for arch, gain in (("dot", 0.0), ("simplicial", -0.05)):
        for n in (1e5, 4e5):
            for d in (1e6, 2e6):
                base = 2 + 10 / n ** 0.3 + 10 / d ** 0.3
                rows.append({"run_id": f"{arch}{n}{d}", "arch": arch, "size": f"s{n:g}", "seed": 0, "status": "done",
                             "params": n, "tokens": d, "loss": base, "val_loss": base, "loss_code": base + gain,
                             "loss_prose": base + 1 - gain, "best_lr": True})
    inputs = ReportInputs(results=pd.DataFrame(rows), results_path=tmp_path / "results.csv")
    assert eval_sets(inputs.results) == ["code", "prose"]
    [fig] = figures.loss_per_eval_set(inputs)
    panels = {ax.get_title(): ax for ax in fig.axes if ax.get_visible() and ax.get_title()}
    assert set(panels) == {"val", "code", "prose"}
    ys = {t: sorted({round(float(y), 6) for line in ax.get_lines()[:-1] for y in line.get_ydata()})
          for t, ax in panels.items()}
    assert ys == {"val": [0.0], "code": [-0.05], "prose": [0.05]}
    assert figures.loss_per_eval_set(ReportInputs(results=pd.DataFrame(rows).drop(
        columns=["loss_code", "loss_prose"]), results_path=tmp_path / "r.csv")) == []


# -- WSD ladders -------------------------------------------------------------------------------------------------


def _wsd_runs(folder, budgets="12800, 25600"):
    spec = parse_sweep(_raw(folder, budgets=budgets, training__schedule="wsd"))
    return [dataclasses.replace(r, training={**r.training, "threads": 1}) for r in expand(spec)
            if (r.arch, r.size) == ("dot", "a")]


def test_wsd_schedule_shares_one_trunk_per_ladder():
    from simplicial.train import wsd_lambda
    from sweeps.grid import trained_flops

    runs = _wsd_runs("/tmp/x", budgets="12800, 25600, 51200")  # 50, 100, 200 steps: decays of 10, 20, 40
    assert [r.trunk["branch_step"] for r in runs] == [40, 80, 160]
    assert len({r.trunk["id"] for r in runs}) == 1 and runs[0].trunk["branch_steps"] == [40, 80, 160]
    assert len({r.run_id for r in runs}) == 3
    f = wsd_lambda(100, 2, 80, 0.1)
    assert [f(0), f(1), f(2), f(79), f(80)] == [0.5, 1.0, 1.0, 1.0, 1.0] and 0.1 < f(99) < f(90) < 1
    assert abs(f(95) - (0.1 + 0.9 * (1 - (15 / 20) ** 0.5))) < 1e-12  # the 1-sqrt cool-down
    separate = sum(r.flops for r in runs)
    assert 1.5 < separate / trained_flops(runs) < 1.6  # a 1:2:4 ladder: 7 / (3.2 + 1.4) = 1.52x less compute
    cosine = expand(parse_sweep(_raw("/tmp/x", budgets="12800, 25600, 51200")))
    assert all(r.trunk is None for r in cosine) and trained_flops(cosine) == sum(r.flops for r in cosine)


@pytest.mark.timeout(600)
def test_wsd_trunk_with_two_branches_resumes_after_a_kill(tmp_path):
    """The long run is killed after it saved the trunk at the short run's branch point; the short run branches
    from that trunk, the long run resumes; both end bit-exact as in an uninterrupted ladder."""
    import json
    import signal
    import subprocess
    import sys
    import time

    from simplicial.train import train_run
    from tests.conftest import REPO_ROOT

    reference = [train_run(r) for r in _wsd_runs(tmp_path / "ref")]
    short, long = _wsd_runs(tmp_path / "killed")
    long.run_dir.mkdir(parents=True)
    (long.run_dir / "config.json").write_text(json.dumps(long.to_dict()))
    cmd = [sys.executable, "-m", "simplicial.train", str(long.run_dir / "config.json")]
    trunk = Path(long.sweep_dir) / "trunks" / long.trunk["id"]
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while not (trunk / "step-40.pt").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (trunk / "step-40.pt").exists() and not (long.run_dir / "result.json").exists(), "killed too late"
    assert not (trunk / "step-80.pt").exists()

    got_short = train_run(short)  # branches from the trunk the killed run left
    out = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "resuming from step" in out.stdout or "took the trunk at step 40" in out.stdout, out.stdout
    got_long = json.loads((long.run_dir / "result.json").read_text())
    assert (trunk / "step-80.pt").exists()
    for got, ref in zip((got_short, got_long), reference):
        assert got["status"] == "done" and got["steps"] == ref["steps"]
        assert got["val_loss"] == ref["val_loss"] and got["train_loss"] == ref["train_loss"]


def test_each_eval_set_is_fitted_and_its_verdict_reported(tmp_path):
    """fit_results writes fits_<set>.json per evaluation set; the report reads them from beside fits.json and gives
    each set its own exponents and verdict: here the sets disagree by construction (on `code` the 2-simplicial
    model's alpha is 0.15 larger, on val the same), and the page says so."""
    import pandas as pd

    from fitting.cli import fit_results
    from reports import figures, tables
    from reports.inputs import resolve_inputs

    rng = np.random.default_rng(0)
    rows = []
    for arch in ("dot", "simplicial"):
        for i, n in enumerate((1e5, 3e5, 1e6, 3e6, 1e7)):
            for d in (1e7, 3e7, 1e8, 3e8):
                for seed in (0, 1):
                    noise = np.exp(rng.normal(0, 0.002))
                    val = (1.7 + 400 / n ** 0.34 + 400 / d ** 0.28) * noise
                    code_alpha = 0.49 if arch == "simplicial" else 0.34
                    code = (1.7 + 400 / n ** code_alpha + 400 / d ** 0.28) * noise
                    rows.append({"run_id": f"{arch}-{i}-{d:g}-{seed}", "arch": arch, "size": f"s{i}", "seed": seed,
                                 "status": "done", "params": n, "tokens": d, "loss": val, "val_loss": val,
                                 "loss_code": code, "best_lr": True})
    csv = tmp_path / "results.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    assert fit_results(csv, tmp_path, ["code"], bootstrap=20, seed=0) == 0
    inputs = resolve_inputs(csv)
    assert set(inputs.eval_fits) == {"code"}
    header, rows_ = tables.eval_set_rows(inputs)
    got = {(r[0], r[1]): r[-1] for r in rows_}
    assert header[:2] == ["evaluation set", "exponent"] and set(got) == {
        (s, e) for s in ("val", "code") for e in ("alpha", "beta")}
    assert got[("val", "alpha")].startswith("not resolved"), rows_
    assert got[("code", "alpha")] == "larger for simplicial at 95%", rows_
    [page] = figures.eval_set_fits(inputs)
    assert "Exponents per evaluation set" in page.texts[0].get_text()


def test_resolved_sweep_round_trips_recipes_and_eval_sets(tmp_path):
    from sweeps.spec import resolved_document

    spec = parse_sweep(_raw(tmp_path, sizes__a__training={"lr_multipliers": [0.5, 1, 2]},
                            architectures__simplicial__training={"warmup_fraction": 0.1},
                            training__schedule="wsd", evals={"tests": {"source": "stdlib-tests"}}))
    again = parse_sweep(resolved_document(spec))
    assert [r.run_id for r in expand(again)] == [r.run_id for r in expand(spec)]
    assert again.evals == spec.evals and again.sizes["a"].training == {"lr_multipliers": [0.5, 1.0, 2.0]}


def test_dry_run_shows_recipe_blocks_epochs_and_params_targets(tmp_path):
    import subprocess
    import sys

    from tests.conftest import REPO_ROOT

    raw = _raw(tmp_path, budgets="12800, 25600", sizes={"p": {"params": 4.0e5, "training": {"lr": 1e-3}}},
               training__schedule="wsd")
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(raw))
    out = subprocess.run([sys.executable, "launch.py", str(path), "--dry-run"], cwd=REPO_ROOT, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    header = out.stdout.splitlines()[0].split()
    for col in ("2-simplicial", "epochs", "lr", "batch", "warmup", "schedule"):
        assert col in header, header
    rows = [l for l in out.stdout.splitlines() if l.startswith(("dot-", "simplicial-"))]
    assert len(rows) == 4 and all(" 0.001 " in r and "wsd: 1-sqrt" in r for r in rows)
    assert any(" 1/2 " in r for r in rows if r.startswith("simplicial-"))
    assert "size p: target 400,000 non-embedding parameters" in out.stdout and "393,856" in out.stdout
    assert "wsd: the budgets of each ladder share a stable trunk" in out.stdout
    assert "train unlike" not in out.stderr  # one recipe per cell
    raw["architectures"]["simplicial"]["training"] = {"batch_tokens": 2 * raw["training"]["batch_tokens"]}
    path.write_text(yaml.safe_dump(raw))
    out = subprocess.run([sys.executable, "launch.py", str(path), "--dry-run"], cwd=REPO_ROOT, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0 and "the architectures train unlike: batch_tokens" in out.stderr, out.stderr


def test_a_bad_override_is_named_where_it_is_written():
    with pytest.raises(SweepError) as err:
        parse_sweep(_raw(architectures__dot__training={"batch_tokens": 100}, sizes__a__training={"lr": 1e-3}), "x.yaml")
    assert str(err.value).startswith("x.yaml: architectures.dot.training.batch_tokens:"), str(err.value)
    with pytest.raises(SweepError) as err:  # valid alone, invalid together: both sections named
        parse_sweep(_raw(architectures__dot__training={"seq_len": 64}, sizes__a__training={"batch_tokens": 96}), "x.yaml")
    assert "sizes.a.training (with architectures.dot.training).batch_tokens" in str(err.value), str(err.value)


def test_wsd_ladder_shares_the_rule_lr_and_is_refused_with_several_processes():
    spec = parse_sweep(_raw(budgets="1e5, 2e5, 4e5", training__schedule="wsd", training__scaling_rule="deepseek-llm",
                            training__lr=KeyError, training__batch_tokens=KeyError))
    ladder = [r for r in expand(spec) if (r.arch, r.size) == ("dot", "a")]
    assert len({(r.training["lr"], r.training["batch_tokens"], r.trunk["id"]) for r in ladder}) == 1
    with pytest.raises(SweepError) as err:
        parse_sweep(_raw(training__schedule="wsd", executor={"name": "local", "per_size": {"a": {"tasks_per_node": 2}}}),
                    "x.yaml")
    assert str(err.value).startswith("x.yaml: training.schedule:") and "single-process" in str(err.value)


def test_tokens_eval_set_is_checked_past_its_first_million_ids(tmp_path):
    """A bad id after the first 2^20 tokens of a `tokens` evaluation set was never seen (a device assert on GPU)."""
    from simplicial.data import DataError, load_eval

    arr = np.zeros((1 << 20) + 10, dtype=np.uint16)
    arr[-3] = 300
    arr.tofile(tmp_path / "ev.bin")
    data = {"source": "tokens", "path": str(tmp_path), "tokenizer": "byte", "vocab_size": 256, "token_dtype": "uint16"}
    with pytest.raises(DataError, match="token id 300 at position 1048583"):
        load_eval(data, "ev", {"source": "tokens", "path": str(tmp_path / "ev.bin")}, tmp_path / "cache")


def test_architectures_trained_unlike_are_flagged(tmp_path, capsys):
    """The rule gives a cell one recipe (no warning); an explicit per-architecture batch or lr splits it, and the
    run command says so before anything trains."""
    from sweeps.grid import check_cells

    same = expand(parse_sweep(_raw(budgets="1e5", training__scaling_rule="deepseek-llm", training__lr=KeyError,
                                   training__batch_tokens=KeyError)))
    assert check_cells(same) == []
    split = expand(parse_sweep(_raw(architectures__simplicial__training={"batch_tokens": 512, "lr": 1e-3})))
    warnings = check_cells(split)
    assert len(warnings) == 2 and all("train unlike" in w and "batch_tokens" in w and "lr" in w for w in warnings)
    tuned = expand(parse_sweep(_raw(architectures__simplicial__training={"lr": 1e-3},
                                    training__lr_multipliers=[0.5, 1.0])))
    assert check_cells(tuned) == []  # an lr axis tunes each architecture's lr: a different lr is the point


def test_sizes_far_apart_in_steps_at_one_budget_are_flagged():
    """The scaling rule's batch grows with the model, so at one token budget the larger sizes take fewer steps; in
    short runs that is flagged before anything trains. One batch for all sizes is not."""
    from sweeps.grid import check_steps

    rule = expand(parse_sweep(_raw(budgets="2e5", training__scaling_rule="deepseek-llm", training__lr=KeyError,
                                   training__batch_tokens=KeyError,
                                   sizes={"a": {"n_layers": 2, "d_model": 32, "n_heads": 2},
                                          "b": {"n_layers": 2, "d_model": 256, "n_heads": 4}})))
    steps = {r.size: r.steps for r in rule if r.arch == "dot"}
    assert steps["a"] > 2 * steps["b"], steps
    warnings = check_steps(rule)
    assert len(warnings) == 2 and all("optimizer steps" in w and "size b" in w for w in warnings), warnings
    assert check_steps(expand(parse_sweep(_raw(budgets="2e5")))) == []  # the tiny sweep's one batch


def test_rule_lr_at_a_batch_far_from_the_rules_is_flagged():
    """The rule's lr belongs with the rule's batch: an explicit batch far from it, with no lr axis, is named with
    the square-root correction; a batch near it, or an lr axis to tune the lr, is not."""
    from sweeps.recipe import check_rule_batch, deepseek_llm, rule_compute

    def runs(batch: int, **over):
        spec = parse_sweep(_raw(budgets="1e6", training__scaling_rule="deepseek-llm", training__lr=KeyError,
                                training__batch_tokens=KeyError,
                                architectures__dot__training={"batch_tokens": batch}, **over))
        return spec, [r for r in expand(spec) if r.arch == "dot"]

    spec, rs = runs(128)
    rule_batch = deepseek_llm(rule_compute(rs[0].model_config, rs[0].tokens))[1]
    assert rule_batch > 1.5 * 128  # the tiny sweep's rule wants a larger batch than 128
    warnings = check_rule_batch(spec, rs)
    assert len(warnings) == 2 and all("square-root rule" in w for w in warnings), warnings  # sizes a and b
    factor = f"{(128 / rule_batch) ** 0.5:.2f}x"
    assert any(factor in w and "dot/a" in w for w in warnings), (factor, warnings)
    near = int(round(rule_batch / 64)) * 64
    assert check_rule_batch(*runs(near)) == []
    assert check_rule_batch(*runs(128, training__lr_multipliers=[0.5, 1.0])) == []


def test_tuned_axis_fits_the_winner_in_replicate_cells(tmp_path):
    """Under lr_tuning_seeds a replicate seed's cells use the tuning's winner, never a stray run of that seed at
    another lr (one that trained before the tuning), even where it has the lower loss; the tuning seed's cells
    keep their own best (the calibrated rule: benchmarks/bench_calibration.py, "study" designs). Before the tuning
    is done each cell's own best stands."""
    from sweeps.collect import results_table

    over = dict(seeds=[0, 1], sizes__a__training={"lr_multipliers": [0.5, 1, 2], "lr_tuning_seeds": [0]})
    spec = parse_sweep(_raw(tmp_path, budgets="2560, 5120", **over))
    runs = expand(spec)
    a = [r for r in runs if r.size == "a" and r.arch == "dot"]
    for r in a:  # seed 0: x0.5 best at the short budget, x1 at the long one (the tuning's budget)
        if r.seed == 0 and r.tokens == 2560:
            _result(r, "done", {0.5: 2.0, 1.0: 2.1, 2.0: 2.2}[r.lr_mult])
    stray = next(r for r in a if r.seed == 1 and r.tokens == 5120 and r.lr_mult == 2.0)
    _result(stray, "done", 1.0)  # a replicate that ran before the tuning, at a multiplier that will lose

    def best():
        t = results_table(runs, spec.sweep_dir, run_states(runs, spec.sweep_dir, query_scheduler=False))
        t = t[(t["arch"] == "dot") & (t["size"] == "a") & t["best_lr"]]
        return {(int(s), int(d)): (m, bool(e)) for s, d, m, e in
                t[["seed", "budget_tokens", "lr_mult", "lr_at_edge"]].itertuples(index=False)}

    assert best() == {(0, 2560): (0.5, True), (1, 5120): (2.0, True)}  # tuning not done: each cell its own best
    for r in a:
        if r.seed == 0 and r.tokens == 5120:
            _result(r, "done", {0.5: 1.6, 1.0: 1.5, 2.0: 1.7}[r.lr_mult])
    assert best() == {(0, 2560): (0.5, True), (0, 5120): (1.0, False)}  # the stray x2 is no cell's best
    for r in a:
        if r.seed == 1 and r.lr_mult == 1.0:
            _result(r, "done", 1.55 if r.tokens == 5120 else 2.15)
    assert best() == {(0, 2560): (0.5, True), (0, 5120): (1.0, False), (1, 2560): (1.0, False),
                      (1, 5120): (1.0, False)}

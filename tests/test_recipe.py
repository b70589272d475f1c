"""Scaling-law-grade grids: guards that keep the comparison meaningful, per-size recipes, the learning-rate axis,
seeds that replicate (common batches across architectures)."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from simplicial.data import load_tokens, train_token_count
from sweeps import SweepError, expand, parse_sweep
from sweeps.grid import check_epochs, data_epochs, simplicial_blocks
from tests.conftest import TINY_SWEEP


def _raw(tmp_path=None, budgets="2560", **over):
    raw = yaml.safe_load(TINY_SWEEP.format(output=str(tmp_path or "/tmp/x"), executor="local", budgets=budgets))
    for dotted, value in over.items():
        node, keys = raw, dotted.split("__")
        for k in keys[:-1]:
            node = node.setdefault(k, {})
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
    assert [r.run_id for r in expand(spec)] == [r.run_id for r in expand(parse_sweep(_raw(tmp_path, budgets="5e5, 2e6")))]


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

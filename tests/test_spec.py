"""Sweep spec validation: every class of bad input is rejected with the file, key path and reason."""

from __future__ import annotations

import pytest
import yaml

from sweeps import SweepError, load_sweep, parse_sweep
from tests.conftest import TINY_SWEEP


def _raw(**over):
    raw = yaml.safe_load(TINY_SWEEP.format(output="/tmp/x", executor="local", budgets="2560"))
    for dotted, value in over.items():
        node, keys = raw, dotted.split("__")
        for k in keys[:-1]:
            node = node[k]
        if value is KeyError:
            del node[keys[-1]]
        else:
            node[keys[-1]] = value
    return raw


def test_demo_sweep_loads():
    spec = load_sweep("sweeps/demo.yaml")
    assert spec.name == "demo" and set(spec.architectures) == {"dot", "simplicial"}
    assert spec.architectures["simplicial"].w2 == 8
    assert spec.sweep_dir.name == "demo"


def test_numbers_written_as_1e6_are_numbers():
    spec = parse_sweep(_raw(budgets={"tokens": ["1e6", 2.5e5]}))
    assert spec.budgets.tokens == [1e6, 2.5e5]


@pytest.mark.parametrize("over, key, words", [
    ({"architectures__simplicial__w2": 0}, "architectures.simplicial.w2", "must be >= 1"),
    ({"architectures__simplicial__w1": -3}, "architectures.simplicial.w1", "must be >= 1"),
    ({"architectures__simplicial__type": "tri"}, "architectures.simplicial.type", "'dot' or 'simplicial'"),
    ({"sizes__a__d_model": 33}, "sizes.a.d_model", "not divisible by n_heads"),
    ({"sizes__a__n_heads": KeyError}, "sizes.a", "missing n_heads"),
    ({"sizes__a__n_layers": "two"}, "sizes.a.n_layers", "expected int"),
    ({"sizes__a__depth": 3}, "sizes.a.depth", "unknown key"),
    ({"trainnig": {}}, "trainnig", "unknown key"),
    ({"training__lr": -1.0}, "training.lr", "must be > 0"),
    ({"training__batch_tokens": 100}, "training.batch_tokens", "not a multiple of seq_len"),
    ({"training__tie_embeddings": "yes"}, "training.tie_embeddings", "expected bool"),
    ({"budgets": {"tokens": [1000], "flops": [1e12]}}, "budgets", "exactly one"),
    ({"budgets": {"tokens": [0]}}, "budgets.tokens[0]", "positive number"),
    ({"data__source": "hub"}, "data.source", "python-stdlib, text or tokens"),
    ({"data__source": "text"}, "data.path", "needs a path"),
    ({"executor__name": "k8s"}, "executor.name", "local, slurm or debug"),
    ({"executor__per_arch": {"nope": {"gpus_per_node": 1}}}, "executor.per_arch.nope", "no such entry"),
    ({"executor__resources": {"mem_gb": 0}}, "executor.resources.mem_gb", "must be > 0"),
    ({"name": KeyError}, "name", "required key is missing"),
    ({"seeds": [1, 1]}, "seeds", "duplicates"),
])
def test_bad_input_names_key_and_reason(over, key, words):
    with pytest.raises(SweepError) as err:
        parse_sweep(_raw(**over), "sweeps/x.yaml")
    msg = str(err.value)
    assert msg.startswith("sweeps/x.yaml: "), msg
    assert f"{key}:" in msg and words in msg, msg


def test_unreadable_and_invalid_yaml(tmp_path):
    with pytest.raises(SweepError, match="cannot read"):
        load_sweep(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(SweepError, match=r"bad.yaml: \(yaml\): not valid YAML"):
        load_sweep(bad)
    top = tmp_path / "list.yaml"
    top.write_text("- 1\n- 2\n")
    with pytest.raises(SweepError, match="must be a mapping"):
        load_sweep(top)


def test_resources_merge_most_specific_wins():
    from sweeps.grid import resources_for

    spec = parse_sweep(_raw(executor={"name": "slurm", "resources": {"partition": "gpu", "gpus_per_node": 1,
                                                                     "timeout_min": 60},
                                      "per_arch": {"simplicial": {"gpus_per_node": 2}},
                                      "per_size": {"b": {"timeout_min": 120, "setup": ["module load cuda"]}}}))
    r = resources_for(spec, "simplicial", "b")
    assert (r.partition, r.gpus_per_node, r.timeout_min, r.setup) == ("gpu", 2, 120, ["module load cuda"])
    assert resources_for(spec, "dot", "a").gpus_per_node == 1

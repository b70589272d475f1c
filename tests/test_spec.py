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
    ({"data__source": "hub"}, "data.source", "python-stdlib, text, tokens or files"),
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


# ---- issue 28: nothing wrong is ever silent ---------------------------------------------------------------------


def _yaml_file(tmp_path, text, name="s.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_duplicate_yaml_keys_are_refused_with_both_lines(tmp_path):
    """A second `dot:` (or a second `training:`) used to replace the first silently."""
    base = TINY_SWEEP.format(output=str(tmp_path / "out"), executor="local", budgets="2560")
    nested = base.replace("  simplicial: {type: simplicial", "  dot: {type: simplicial, every: 2}\n  simplicial: {type: simplicial")
    with pytest.raises(SweepError) as err:
        load_sweep(_yaml_file(tmp_path, nested))
    assert "architectures.dot: duplicate key: line 5 repeats the key of line 4" in str(err.value)
    top = base + "training:\n  lr: 1.0e-3\n"
    with pytest.raises(SweepError, match=r"s.yaml: training: duplicate key: line \d+ repeats the key of line 14"):
        load_sweep(_yaml_file(tmp_path, top))
    deep = base.replace("  lr: 3.0e-3", "  lr: 3.0e-3\n  lr: 1.0e-3")
    with pytest.raises(SweepError, match=r"training.lr: duplicate key"):
        load_sweep(_yaml_file(tmp_path, deep))


@pytest.mark.parametrize("over, key", [
    ({"training__lr": float("inf")}, "training.lr"),
    ({"training__weight_decay": float("nan")}, "training.weight_decay"),
    ({"training__grad_clip": float("nan")}, "training.grad_clip"),
    ({"training__lr": "inf"}, "training.lr"),
    ({"executor__resources": {"mem_gb": float("inf")}}, "executor.resources.mem_gb"),
    ({"budgets": {"tokens": [2560, "nan"]}}, "budgets.tokens[1]"),
])
def test_non_finite_numbers_are_refused_at_load(over, key):
    with pytest.raises(SweepError) as err:
        parse_sweep(_raw(**over), "x.yaml")
    assert f"x.yaml: {key}: must be a finite number" in str(err.value) or f"{key}: must be a positive" in str(err.value)


@pytest.mark.parametrize("over, key, words", [
    ({"seeds": [0, -1]}, "seeds[1]", "must be in [0, 2^63 - 1]"),
    ({"training__seed": -3}, "training.seed", "must be in [0, 2^63 - 1]"),
    ({"budgets": {"tokens": [1e30]}}, "budgets.tokens[0]", "beyond any real training run"),
    ({"budgets": {"flops": [1e40]}}, "budgets.flops[0]", "beyond any real training run"),
    ({"budgets": {"tokens": [2560, 2560.0]}}, "budgets.tokens[1]", "listed twice"),
    ({"name": ".."}, "name", "does not start with '.'"),
    ({"executor__resources": {"account": 12345}}, "executor.resources.account", 'write it quoted, "12345"'),
])
def test_out_of_range_values_name_key(over, key, words):
    with pytest.raises(SweepError) as err:
        parse_sweep(_raw(**over), "x.yaml")
    assert f"x.yaml: {key}: " in str(err.value) and words in str(err.value), str(err.value)


def test_training_seed_is_the_seed_or_conflicts_with_seeds():
    raw = _raw(training__seed=7)
    assert parse_sweep(raw).seeds == [7]  # it was silently replaced by the default seeds: [0]
    with pytest.raises(SweepError, match=r"training.seed: 7 conflicts with seeds: \[1, 2\]"):
        parse_sweep({**_raw(training__seed=7), "seeds": [1, 2]})


def test_numeric_looking_strings_stay_strings_in_string_fields(tmp_path):
    text = TINY_SWEEP.format(output=str(tmp_path / "out"), executor="slurm", budgets="2560") + (
        '  resources: {account: "12345", partition: "2024", qos: 1e3,\n'
        '              setup: ["2024"], timeout_min: "60"}\n')
    spec = load_sweep(_yaml_file(tmp_path, text))
    res = spec.executor.resources
    assert (res.account, res.partition, res.qos, res.setup, res.timeout_min) == ("12345", "2024", "1e3", ["2024"], 60)


def test_mixed_type_and_binary_yaml_are_messages(tmp_path):
    text = TINY_SWEEP.format(output=str(tmp_path / "out"), executor="local", budgets="2560")
    with pytest.raises(SweepError, match=r"s.yaml: 1: keys must be strings"):
        load_sweep(_yaml_file(tmp_path, text + "1: x\n"))
    binary = tmp_path / "b.yaml"
    binary.write_bytes(b"name: x\n\xff\xfe\x00\x01")
    with pytest.raises(SweepError, match=r"b.yaml: \(file\): not a text file"):
        load_sweep(binary)


def test_output_root_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "afile").write_text("")
    with pytest.raises(SweepError, match=r"x.yaml: output: .*afile exists and is not a folder"):
        parse_sweep(_raw(output=str(tmp_path / "afile")), "x.yaml")


@pytest.mark.parametrize("budgets, words", [
    ({"tokens": [100]}, "under one global batch (training.batch_tokens=256)"),
    ({"tokens": [2600, 2700]}, "trains the same 2816 tokens as budgets.tokens[0]=2600"),
])
def test_budgets_that_rounding_distorts_are_refused(budgets, words):
    from sweeps import expand

    with pytest.raises(SweepError) as err:
        expand(parse_sweep(_raw(budgets=budgets), "x.yaml"))
    assert "x.yaml: budgets.tokens[" in str(err.value) and words in str(err.value), str(err.value)


def test_params_off_the_family_names_the_size():
    from sweeps import expand

    with pytest.raises(SweepError, match=r"x.yaml: sizes.a.params: 1e\+20 parameters is outside"):
        expand(parse_sweep(_raw(sizes={"a": {"params": 1e20}}), "x.yaml"))
    with pytest.raises(SweepError, match=r"sizes.a.params: must be a finite number"):
        parse_sweep(_raw(sizes={"a": {"params": "inf"}}), "x.yaml")

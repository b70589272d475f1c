"""scripts/study_sitting.py: the plan of a time-limited sitting (measured rates beat assumed ones, tiers first,
runs that cannot finish refused), refusal of committed runs the sweep no longer produces, the tarball a sitting
packs and the unpacking that admits only small files; and every committed study regenerated from its results.csv."""

from __future__ import annotations

import importlib.util
import io
import json
import math
import sys
import tarfile
from pathlib import Path

import pytest

from sweeps import expand, load_sweep
from sweeps.state import run_states
from tests.conftest import REPO_ROOT, write_sweep

_spec = importlib.util.spec_from_file_location("study_sitting", REPO_ROOT / "scripts" / "study_sitting.py")
sitting = importlib.util.module_from_spec(_spec)
sys.modules["study_sitting"] = sitting  # its dataclasses look their module up there
_spec.loader.exec_module(sitting)

# one token per 10 us for every run, start-up 5 s: easy numbers to check the packing by hand
FLAT = {k: {"tflops": 1e9, "max_tokens_per_s": 1e5, "startup_s": 5.0} for k in ("dot", "simplicial")}


def _finish(run, tokens_per_s: float, startup_s: float, windows: int = 3) -> None:
    run.run_dir.mkdir(parents=True, exist_ok=True)
    train = run.tokens / tokens_per_s
    (run.run_dir / "result.json").write_text(json.dumps({
        "status": "done", "tokens": run.tokens, "tokens_per_s": tokens_per_s, "train_time_s": train,
        "wall_time_s": train + startup_s, "val_loss": 2.0}))
    (run.run_dir / "config.json").write_text(json.dumps(run.to_dict()))
    (run.run_dir / "metrics.jsonl").write_text("".join(json.dumps({"step": i, "tokens_per_s": tokens_per_s}) + "\n"
                                                       for i in range(10, 10 * windows + 1, 10)))
    (run.run_dir / "checkpoint.pt").write_bytes(b"big")


def test_plan_fits_the_sitting_and_prefers_measured_rates(tmp_path):
    path = write_sweep(tmp_path, budgets="2560, 5120, 10240", extra="""
        seeds: [0, 1]
    """)
    spec = load_sweep(path)
    runs = expand(spec)  # 2 archs x 2 sizes x 3 budgets x 2 seeds
    states = run_states(runs, spec.sweep_dir, query_scheduler=False)
    est = sitting.estimates(spec, runs, states, FLAT)
    # assumed: tokens / 1e5 + 5 s of wall time; next to no GPU time at 1e9 TFLOP/s
    assert all(e.source == "assumed" and math.isclose(e.seconds, r.tokens / 1e5 + 5) and e.gpu_seconds < 1e-6
               for r, e in zip(runs, (est[r.run_id] for r in runs)))
    chosen, makespan, too_long = sitting.plan(spec, runs, states, 0.6, FLAT)
    assert too_long and not chosen  # nothing fits 0.6 s: every run is refused by name
    chosen, makespan, too_long = sitting.plan(spec, runs, states, 40.0, FLAT)
    assert not too_long and makespan <= 40.0 and chosen
    # the first seed's grid (12 runs of about 5.1 s, about 31 s on two slots) goes first; seed 1 fills what is left
    assert {r.run_id for r in runs if r.seed == 0} <= set(chosen) and len(chosen) < len(runs)
    slots = [0.0, 0.0]  # the plan's makespan is what two slots of the chosen runs give
    for rid in chosen:
        slots[slots.index(min(slots))] += est[rid].seconds
    assert max(slots) <= 40.0 and math.isclose(sum(slots), sum(est[rid].seconds for rid in chosen))

    # GPU-bound runs (their arithmetic at 1e-6 TFLOP/s takes longer than their launches) share the GPU's time:
    tflops = min(r.flops for r in runs) / 8.0 / 1e12  # every run needs 8 s of GPU or more
    slow = {k: {**v, "tflops": tflops} for k, v in FLAT.items()}
    chosen, makespan, _ = sitting.plan(spec, runs, states, 40.0, slow)
    est_slow = sitting.estimates(spec, runs, states, slow)
    gpu = sum(est_slow[rid].gpu_seconds for rid in chosen)
    assert 1 <= len(chosen) <= 5 and 8.0 <= gpu <= makespan <= 40.0
    assert all(math.isclose(est_slow[r.run_id].gpu_seconds, r.flops / (tflops * 1e12)) for r in runs)

    # one finished run of (dot, a) measured 1e4 tok/s and 2 s start-up: the other dot-a runs use that
    dot_a = [r for r in runs if r.arch == "dot" and r.size == "a"]
    _finish(dot_a[0], 1e4, 2.0)
    states = run_states(runs, spec.sweep_dir, query_scheduler=False)
    est = sitting.estimates(spec, runs, states, FLAT)
    assert all(est[r.run_id].source == "measured" and
               math.isclose(est[r.run_id].seconds, r.tokens / 1e4 + 2.0 + sitting.PROCESS_START_S) for r in dot_a)
    assert est[[r for r in runs if r.arch == "dot" and r.size == "b"][0].run_id].source == "assumed"
    chosen, _, _ = sitting.plan(spec, runs, states, 1000.0, FLAT)
    assert dot_a[0].run_id not in chosen and len(chosen) == len(runs) - 1


def test_measured_rate_weights_a_ladders_windows_not_its_runs(tmp_path):
    """A ladder's long trunk run logs many windows, its decays a few, slower ones (timed while other runs shared the
    GPU): the rate is all windows' tokens over their time (the harmonic mean), not a median over runs, which the
    short runs would decide."""
    spec = load_sweep(write_sweep(tmp_path, budgets="2560, 5120, 10240"))
    runs = expand(spec)
    dot_a = sorted((r for r in runs if r.arch == "dot" and r.size == "a"), key=lambda r: r.tokens)
    _finish(dot_a[2], 1e4, 2.0, windows=30)
    _finish(dot_a[1], 2e3, 2.0, windows=1)
    _finish(dot_a[0], 2e3, 2.0, windows=1)
    states = run_states(runs, spec.sweep_dir, query_scheduler=False)
    est = sitting.estimates(spec, runs, states, FLAT)
    rate = 32 / (30 / 1e4 + 2 / 2e3)  # 8,000 tok/s; the median of the runs' rates would be 2,000
    for r in dot_a:
        assert est[r.run_id].source == "measured"
        assert math.isclose(est[r.run_id].seconds, r.tokens / rate + 2.0 + sitting.PROCESS_START_S)


def test_orphan_committed_runs_refuse_a_sitting(tmp_path):
    path = write_sweep(tmp_path)
    spec = load_sweep(path)
    assert sitting.committed_orphans(spec, expand(spec)) == []
    (spec.sweep_dir / "runs" / "dot-a-2.56ktok-s0-0123456789").mkdir(parents=True)
    assert sitting.committed_orphans(spec, expand(spec)) == ["dot-a-2.56ktok-s0-0123456789"]
    with pytest.raises(SystemExit, match="not runs of this sweep as the code now expands it"):
        sitting._plan_or_refuse(path, 480.0)


def test_pack_and_unpack_small_files_only(tmp_path, capsys):
    path = write_sweep(tmp_path)
    spec = load_sweep(path)
    runs = expand(spec)
    _finish(runs[0], 1e4, 1.0)
    runs[1].run_dir.mkdir(parents=True)  # unfinished: not packed
    (runs[1].run_dir / "metrics.jsonl").write_text("{}\n")
    (spec.sweep_dir / "results.csv").write_text("run_id\n")
    tar = sitting._pack(spec, tmp_path / "out", [f"# sitting T: code {sitting.code_fingerprint()}; test"])
    with tarfile.open(tar) as t:
        names = sorted(t.getnames())
    assert names == sorted(["results.csv", "sittings.log", *(f"runs/{runs[0].run_id}/{n}" for n in
                                                              ("config.json", "metrics.jsonl", "result.json"))])

    study = tmp_path / "study"
    study.mkdir()
    (study / "study.yaml").write_text("name: study\n")
    assert sitting.main(["unpack", str(study), str(tar)]) == 0
    assert "WARNING" not in capsys.readouterr().out  # the same code packed and unpacks
    other = sitting._pack(spec, tmp_path / "out2", ["# sitting U: code 0123456789abcdef; test"])
    assert sitting.main(["unpack", str(study), str(other)]) == 0
    assert "WARNING: the last sitting ran other code" in capsys.readouterr().out
    assert json.loads((study / "runs" / runs[0].run_id / "result.json").read_text())["status"] == "done"
    # a sitting that ran on a tree without the latest unpacked sitting: its log does not continue this one's
    before = (study / "sittings.log").read_text()
    (spec.sweep_dir / "sittings.log").write_text("# sitting T: an older tree\n")
    stale = sitting._pack(spec, tmp_path / "out3", ["# sitting V: code 0123456789abcdef; test"])
    with pytest.raises(SystemExit, match="does not continue"):
        sitting.main(["unpack", str(study), str(stale)])
    assert (study / "sittings.log").read_text() == before
    assert not (study / "runs" / runs[0].run_id / "checkpoint.pt").exists()

    evil = tmp_path / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as t:
        info = tarfile.TarInfo("runs/x/checkpoint.pt")
        info.size = 3
        t.addfile(info, io.BytesIO(b"big"))
    with pytest.raises(SystemExit, match="unexpected member 'runs/x/checkpoint.pt'"):
        sitting.main(["unpack", str(study), str(evil)])


STUDIES = sorted(p.parent for p in (REPO_ROOT / "studies").glob("*/study.yaml"))


@pytest.mark.parametrize("study", STUDIES or [None], ids=[p.name for p in STUDIES] or ["none"])
def test_committed_study_regenerates_from_its_results(study, tmp_path):
    """Fits (validation and each evaluation set), fixed-budget fits and the PDF from the committed results.csv, on
    the CPU in seconds; the point estimates must equal the committed fit files' (their intervals depend on the
    bootstrap count, not checked here), and the README's headline block must be what the committed fits say."""
    if study is None or not (study / "results.csv").is_file():
        pytest.skip(f"no committed study results yet ({'no study' if study is None else study.name}: no results.csv)")
    paths = sitting.regenerate(study, tmp_path, bootstrap=20)
    assert paths["report"].read_bytes()[:5] == b"%PDF-"
    for key, path in paths.items():
        committed = study / path.name
        if not key.startswith("fits") or not committed.is_file():
            continue
        old, fresh = json.loads(committed.read_text()), json.loads(path.read_text())
        for group, fit in old["fits"].items():
            for name in ("E", "A", "B", "alpha", "beta"):
                a, b = fit.get(name), fresh["fits"][group].get(name)
                if isinstance(a, (int, float)):
                    assert math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9), (study.name, key, group, name, a, b)
    readme = (study / "README.md").read_text()
    if sitting.HEADLINE_BEGIN in readme:
        block = readme.split(sitting.HEADLINE_BEGIN, 1)[1].split(sitting.HEADLINE_END, 1)[0]
        assert block.strip() == sitting.headline(study).strip(), "README headline differs from the fits: " \
            f"python3 scripts/study_sitting.py headline {study.relative_to(REPO_ROOT)}"


def test_headline_block_is_written_from_the_fits(tmp_path):
    """`headline` rewrites only the README's marked block, from the fit files; a README without the block is
    refused by name, untouched."""
    import shutil

    pilot = REPO_ROOT / "studies" / "dot-vs-simplicial-h100" / "pilot"
    if not (pilot / "results.csv").is_file():
        pytest.skip("no committed pilot")
    study = tmp_path / "s"
    study.mkdir()
    shutil.copy(pilot / "results.csv", study / "results.csv")
    (study / "README.md").write_text("# s\n\nno block\n")
    sitting.regenerate(study, study, bootstrap=0)
    with pytest.raises(SystemExit, match="no headline block"):
        sitting.main(["headline", str(study)])
    assert (study / "README.md").read_text() == "# s\n\nno block\n"
    (study / "README.md").write_text(f"# s\n\n{sitting.HEADLINE_BEGIN}\nold\n{sitting.HEADLINE_END}\n\nafter\n")
    assert sitting.main(["headline", str(study)]) == 0
    text = (study / "README.md").read_text()
    assert text.startswith(f"# s\n\n{sitting.HEADLINE_BEGIN}\n| evaluation set | exponent |") and "old" not in text
    assert text.endswith(f"{sitting.HEADLINE_END}\n\nafter\n")
    assert "| val | alpha | not identified |" in text  # the pilot identifies nothing, and the headline says so
    assert "Not identified, as the fits say why:\n- val, dot: " in text  # and why, from the fit's own reasons
    # the local slopes at each budget, from fixed_budget.json, each with its interval and their difference's
    slopes = text.split("| D | dot | simplicial | simplicial - dot |\n|---|---|---|---|\n", 1)[1]
    slopes = slopes.split(sitting.HEADLINE_END)[0].strip().splitlines()
    assert len(slopes) >= 3 and all(ln.startswith("| ") and ln.count(" | ") == 3 for ln in slopes), slopes
    # one row per budget, both architectures on it (the pilot's budgets differ by a few batches between them)
    assert len(slopes) == 3 and not any(ln.endswith(" - |") for ln in slopes), slopes
    assert any("[" in ln for ln in slopes), slopes


@pytest.mark.parametrize("study", STUDIES, ids=[p.name for p in STUDIES])
def test_study_design_meets_the_brief(study):
    """The committed study file is a valid sweep (its corpus modules swapped for ones this machine has: they are
    resolved where the study runs) and keeps the design issue 32 asks for: two architectures, at least 5 sizes over
    at least 2 decades of non-embedding N, each with a 2-simplicial block per 4 layers, at least 3 token budgets,
    an lr axis at the smallest and largest size, at least two evaluation measures besides validation."""
    import yaml as _yaml

    from sweeps.grid import simplicial_blocks
    from sweeps.spec import parse_sweep

    doc = _yaml.safe_load((study / "study.yaml").read_text())
    doc["data"].update(modules=["yaml"], include=["**/*.py"], exclude=[])
    for ev in doc.get("evals", {}).values():
        if ev.get("source") == "files":
            ev.update(modules=["json"], include=["**/*.py"], exclude=[])
    spec = parse_sweep(doc, str(study / "study.yaml"))
    assert spec.sweep_dir == study.resolve()  # runs land in the study folder
    runs = expand(spec)
    assert {spec.architectures[a].type for a in spec.architectures} == {"dot", "simplicial"}
    dot = {r.size: r.params["params_non_embedding"] for r in runs if r.arch == "dot"}
    assert len(dot) >= 5 and math.log10(max(dot.values()) / min(dot.values())) >= 2.0
    for r in runs:
        if spec.architectures[r.arch].type == "simplicial":
            assert simplicial_blocks(r.model_config) >= r.model["n_layers"] // 4 >= 1
    assert len(spec.budgets.tokens or spec.budgets.flops) >= 3
    lr_sizes = {r.size for r in runs if r.lr_mult != 1.0}
    smallest, largest = min(dot, key=dot.get), max(dot, key=dot.get)
    assert {smallest, largest} <= lr_sizes
    assert len(spec.evals) >= 2


def test_regenerate_runs_on_a_synthetic_table(tmp_path):
    """The CI path of a study (fits, fixed-budget fits, PDF from results.csv alone) on a SYNTHETIC table of known
    truth made here in tmp_path (never committed), so the path is exercised before any study has real results."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    rows = []
    for arch, alpha in (("dot", 0.34), ("simplicial", 0.34)):
        for size, n in zip("abcde", (2e5, 8e5, 3e6, 1.2e7, 3e7)):
            for d in (4e6, 1.2e7, 3.6e7):
                for seed in (0, 1):
                    loss = (1.7 + 406.4 / n ** alpha + 410.7 / d ** 0.28) * math.exp(rng.normal(0, 0.005))
                    rows.append({"run_id": f"{arch}-{size}-{d:g}-s{seed}", "arch": arch, "size": size,
                                 "seed": seed, "status": "done", "params": n, "tokens": d, "loss": loss,
                                 "flops": 6 * n * d})
    study = tmp_path / "synthetic"
    study.mkdir()
    pd.DataFrame(rows).to_csv(study / "results.csv", index=False)
    paths = sitting.regenerate(study, tmp_path / "out", bootstrap=10)
    fits = json.loads(paths["fits"].read_text())
    assert set(fits["fits"]) == {"dot", "simplicial"}
    assert abs(fits["fits"]["dot"]["alpha"] - 0.34) < 0.1
    assert paths["report"].read_bytes()[:5] == b"%PDF-" and any(paths["figures"].glob("*.png"))
    assert json.loads(paths["fixed_budget"].read_text())


def test_a_wsd_ladder_is_planned_as_one_unit(tmp_path):
    """A wsd ladder's runs share a trunk that a sitting does not keep: they are planned together, priced as the
    trunk once plus each run's decay, and hold one slot of max_parallel per run of the widest ladder."""
    path = write_sweep(tmp_path, budgets="2560, 5120, 10240", extra="""
        seeds: [0, 1]
    """)
    path.write_text(path.read_text().replace("  lr: 3.0e-3\n", "  lr: 3.0e-3\n  schedule: wsd\n"))
    spec = load_sweep(path)
    runs = expand(spec)
    assert all(r.trunk for r in runs)
    states = run_states(runs, spec.sweep_dir, query_scheduler=False)
    est = sitting.estimates(spec, runs, states, FLAT)
    pending = list(runs)
    us = sitting.units(spec, pending, est)
    assert len(us) == 8 and all(len(u.run_ids) == 3 for u in us)  # 2 archs x 2 sizes x 2 seeds ladders of 3
    for u in us:
        ladder = [r for r in runs if r.run_id in u.run_ids]
        longest = max(ladder, key=lambda r: r.tokens)
        trunk = (longest.trunk["branch_step"] / longest.steps) * longest.tokens / 1e5
        decays = sum((1 - r.trunk["branch_step"] / r.steps) * r.tokens / 1e5 for r in ladder)
        assert math.isclose(u.seconds, 5.0 + trunk + decays)
        assert u.seconds < sum(est[rid].seconds for rid in u.run_ids)  # cheaper than three separate runs
    chosen, makespan, too_long = sitting.plan(spec, runs, states, 25.0, FLAT)
    assert not too_long and chosen and makespan <= 25.0
    for u in us:  # whole ladders or nothing
        assert set(u.run_ids) <= set(chosen) or not set(u.run_ids) & set(chosen)
    # max_parallel 2 holds less than one ladder of 3 at a time: one slot
    assert len(chosen) // 3 <= max(1, 25.0 // min(u.seconds for u in us))


@pytest.mark.filterwarnings("error::numpy.exceptions.ComplexWarning")  # a negative alpha once plotted as complex
def test_pilot_regenerates_and_says_it_identifies_nothing(tmp_path, capsys):
    """The H100 pilot of dot-vs-simplicial-h100 (27 runs of seed 0, studies/.../pilot/): its loss rises with N at
    fixed D (too few steps for the larger sizes), so no fit is identified and varpro finds no admissible (alpha,
    beta). The tool must say so, in words, and still write its files: no exponent, no verdict of a difference."""
    pilot = REPO_ROOT / "studies" / "dot-vs-simplicial-h100" / "pilot"
    paths = sitting.regenerate(pilot, tmp_path, bootstrap=20)
    out = capsys.readouterr().out
    doc = json.loads(paths["fits"].read_text())
    for group in ("dot", "simplicial"):
        assert not any(m["identified"] for m in doc["fits"][group]["methods"].values()), group
    assert "no (alpha, beta) on the grid gives non-negative E, A, B" in out
    assert "the loss rises with N at fixed D" in out  # and why: the pilot's larger models took fewer steps
    assert "NOT IDENTIFIED" in out and paths["report"].read_bytes()[:5] == b"%PDF-"
    assert doc["comparison"]["simplicial - dot"]["alpha"]["verdict"] == "not identified"


def test_a_sitting_runs_what_fits_and_names_what_never_will(tmp_path, capsys):
    """Units whose estimate exceeds a whole sitting are named, not a reason to run nothing (estimates measured
    while runs shared the GPU can be pessimistic); a sitting with nothing else to run refuses."""
    path = write_sweep(tmp_path, budgets="2560, 5120, 10240")
    # FLAT: tokens / 1e5 + 5 s, so 5.03, 5.05 and 5.10 s: the 10240-token runs do not fit 5.07 s
    spec, runs, _, chosen, _, _, warnings = sitting._plan_or_refuse(path, 5.07, FLAT)
    long = {r.run_id for r in runs if r.tokens == 10240}
    assert chosen and not long & set(chosen) and len(warnings) == len(long)
    assert all(w.startswith("warning: not in this sitting") for w in warnings)
    assert "warning: not in this sitting" in capsys.readouterr().err
    for r in runs:
        if r.tokens != 10240:
            _finish(r, 1e5, 5.0)
    with pytest.raises(SystemExit, match="cannot finish in one sitting"):
        sitting._plan_or_refuse(path, 5.07, FLAT)
    # a refill sitting (the time left after an earlier one) plans nothing instead
    assert sitting._plan_or_refuse(path, 5.07, FLAT, refuse=False)[3] == []


def test_sittings_refill_the_time_left():
    """`run` plans again with the time left when a sitting ends early (the estimates run long), counting from the
    first launch, until less than MIN_REFILL_S is left, a sitting launches nothing, or one fails; refills stop at
    the first launch + seconds, whatever their own set-up takes."""
    def fake(outcomes, share=0.6):
        now, calls = [1000.0], []

        def one(left, deadline):
            calls.append((round(left, 6), deadline))
            t0 = now[0] + 20.0  # plan and caches before the launch
            now[0] = t0 + share * left + 15.0  # ends early, then collects and packs
            return (t0, *outcomes[len(calls) - 1])
        return one, calls, lambda: now[0]

    one, calls, clock = fake([(0, 9), (0, 3), (0, 1), (0, 1)])
    assert sitting.refill(500.0, one, clock) == 0
    # 500; then 500 - (300 + 15) = 185; then 185 - (111 + 15 + 20) = 39 < MIN_REFILL_S: stop
    assert calls == [(500.0, None), (185.0, 1520.0)]  # the first launched at 1020
    one, calls, clock = fake([(0, 9), (0, 0)], share=0.1)
    assert sitting.refill(500.0, one, clock) == 0 and len(calls) == 2  # the refill found nothing to run
    one, calls, clock = fake([(1, 9)], share=0.1)
    assert sitting.refill(500.0, one, clock) == 1 and len(calls) == 1  # a failed sitting is not refilled


def test_run_refills_and_the_last_tarball_holds_every_sitting(tmp_path):
    """A real `run` on this machine (local executor, tiny models): with the assumed H100 start-ups (30-45 s a run)
    and 2 slots, a 150-s sitting plans 6 of the 8 runs; they end long before their estimate, so a refill plans the
    other 2 in the time left (at least 60 s unless the first sitting took over 90 s; it takes seconds). The tarball
    of the last sitting holds both sittings."""
    path = write_sweep(tmp_path)
    out = tmp_path / "pack"
    assert sitting.main(["run", str(path), "--seconds", "150", "--out", str(out)]) == 0
    spec = load_sweep(path)
    runs = expand(spec)
    assert all(st.status == "done" for st in run_states(runs, spec.sweep_dir, query_scheduler=False))
    assert [p.name for p in out.iterdir()] == ["tiny-sitting.tar.gz"]  # no temporary file left behind
    with tarfile.open(out / "tiny-sitting.tar.gz") as t:
        names = set(t.getnames())
        log = t.extractfile("sittings.log").read().decode()
    assert all(f"runs/{r.run_id}/result.json" in names for r in runs)
    blocks = [ln for ln in log.splitlines() if ln.startswith("# sitting")]
    assert len(blocks) == 2 and "launching 6 run(s)" in blocks[0] and "launching 2 run(s)" in blocks[1], blocks

"""bench/conflict_study.py: the per-step statistics and their summaries (no training here)."""

from __future__ import annotations

import importlib.util
import json
import math

import pytest
import torch

from dpda.align import build_aligner
from tests.conftest import REPO_ROOT


def _load():
    spec = importlib.util.spec_from_file_location("bench_conflict_study", REPO_ROOT / "bench" / "conflict_study.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


study = _load()


def test_wilson_interval_known_values():
    lo, hi = study.wilson(0, 40)
    assert lo == 0.0 and hi == pytest.approx(0.0876, abs=1e-4)
    lo, hi = study.wilson(10, 40)  # 25 %: the paper's rate
    assert lo == pytest.approx(0.1419, abs=1e-4) and hi == pytest.approx(0.4019, abs=1e-4)
    assert all(math.isnan(v) for v in study.wilson(0, 0))


def test_layer_groups_merge_parameters_of_one_module():
    names = ["cnn.0.weight", "cnn.0.bias", "cnn.3.weight", "blstm.weight_ih", "fc.weight", "fc.bias"]
    offsets = [(0, 4), (4, 5), (5, 9), (9, 12), (12, 14), (14, 15)]
    assert study._layer_groups(names, offsets) == [("cnn.0", 0, 5), ("cnn.3", 5, 9), ("blstm", 9, 12), ("fc", 12, 15)]


def test_probe_records_per_group_cosines_and_leaves_the_update_alone():
    g = torch.tensor([[1.0, 0.0, 2.0, 1.0], [-1.0, 0.0, 1.0, 1.0]])
    probe = study._Probe(build_aligner("none"), [("a", 0, 2), ("b", 2, 4)])
    out = probe(g.clone())
    torch.testing.assert_close(out, g.mean(0))
    assert probe.last["a"] == pytest.approx(-1.0) and probe.last["b"] == pytest.approx(3 / math.sqrt(10))
    assert probe.last_dots == pytest.approx({"a": -1.0, "b": 3.0})
    assert probe.last_stats["conflict"] is False  # the wrapped aligner's statistics: whole model dot = 2 > 0


def _records(n, conflict_every):
    recs = []
    for i in range(n):
        c = i % conflict_every == 0
        recs.append({"step": i + 1, "cos": -0.1 if c else 0.3, "dot": -1.0 if c else 2.0, "conflict": c,
                     "norms": [1.0, 2.0], "loss_orig": 0.5, "loss_aug": 0.6,
                     "module_cos": {"cnn": -0.2 if c else 0.1, "fc": 0.9},
                     "layer_cos": {"cnn.0": -0.5, "fc": 0.9}, "layer_dot": {"cnn.0": -1.0, "fc": 3.0}})
    return recs


def test_cell_summary_counts_conflicts_per_model_and_module():
    cell = {"name": "x", "factor": "batch", "value": "4"}
    s = study.summarize_cell(cell, _records(40, 4), 12.0)
    assert s["steps"] == 40 and s["conflicts"] == 10 and s["conflict_rate"] == pytest.approx(0.25)
    assert s["conflict_ci"] == pytest.approx(study.wilson(10, 40))
    assert s["mean_cos"] == pytest.approx(0.25 * -0.1 + 0.75 * 0.3)
    assert s["module"]["cnn"]["conflict_rate"] == pytest.approx(0.25) and s["module"]["fc"]["conflict_rate"] == 0.0
    assert s["layer"]["cnn.0"]["conflict_rate"] == 1.0
    assert s["layer"]["cnn.0"]["dot_share"] == pytest.approx(0.25) and s["layer"]["fc"]["dot_share"] == pytest.approx(0.75)
    assert s["norm_ratio_aug_orig"] == pytest.approx(2.0)
    json.dumps(s)  # the summary is plain JSON


def test_report_table_and_figures(tmp_path):
    out = tmp_path / "out"
    summaries = []
    for name, every in (("base", 20), ("batch4", 4)):
        (out / "seed1" / name).mkdir(parents=True)
        recs = _records(20, every)
        (out / "seed1" / name / "steps.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
        summaries.append(study.summarize_cell({"name": name, "factor": "base" if name == "base" else "batch",
                                               "value": name}, recs, 5.0))
    figs = study.figures(summaries, out, tmp_path / "figures")
    assert figs == ["conflict_study_rates.png", "conflict_study_heatmap.png"]
    assert all((tmp_path / "figures" / f).stat().st_size > 0 for f in figs)

    class Args:
        epochs, steps = 2, 10

    table = study.markdown(summaries, Args, figs, "figures")
    assert "| batch | batch4 | 20 | 25.0 % (" in table and "`cnn.0` (100 %; 25 % of dot mass)" in table
    report = tmp_path / "RESULTS.md"
    report.write_text("# R\n\ntext\n")
    study.write_report(report, table)
    study.write_report(report, table)
    text = report.read_text()
    assert text.count(study.BEGIN) == 1 and text.startswith("# R\n\ntext\n")


def test_every_cell_resolves_to_a_valid_run_config(tmp_path):
    import yaml

    from dpda.config import from_dict
    from dpda.train.config import RunConfig, validate

    base = yaml.safe_load((REPO_ROOT / "configs" / "minibench" / "base.yaml").read_text())
    study.make_assets(tmp_path / "assets")
    cells = study.cells(tmp_path / "model.pt")
    names = [c["name"] for c in cells]
    assert len(names) == len(set(names))
    for algo in range(1, 9):
        assert algo == 4 or f"rawboost{algo}" in names
    assert {"rawnet2", "aasist_l", "batch4", "batch32", "lr1e-2", "lr1e-4", "chain_mild", "chain_harsh"} <= set(names)
    for cell in cells:
        cfg = validate(from_dict(RunConfig, study.cell_config(base, cell, tmp_path, tmp_path, 1, 2, 5)))
        assert cfg.train.mode == "dual" and cfg.data.dev is None and cfg.train.steps_per_epoch == 5
        if cell.get("chain"):
            assert cfg.augment.where == "workers" and cfg.augment.chain.endswith(f"chain_{cell['chain']}.yaml")
    from dpda.augment.chain import load_chain

    chain = load_chain(str(tmp_path / "chain_harsh.yaml"), sr=16000)
    import numpy as np

    y = chain(np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1, np.random.default_rng(1))
    assert np.isfinite(y).all() and y.shape[-1] > 0


def test_a_cell_trains_and_records_every_step(tmp_path, minibench_dir):
    """End to end on two steps of real minibench audio: the study's trainer hooks still see every step (they
    hook into dpda's Trainer, whose structure may change)."""
    import yaml

    base = yaml.safe_load((REPO_ROOT / "configs" / "minibench" / "base.yaml").read_text())
    cell = next(c for c in study.cells(tmp_path / "model.pt") if c["name"] == "batch4")
    cfg = study.cell_config(base, cell, minibench_dir, tmp_path, 1, 1, 2)
    cfg["data"]["num_workers"] = 0
    summary = study.run_cell(cell, cfg, tmp_path / "cell")
    assert summary["steps"] == 2
    records = [json.loads(line) for line in (tmp_path / "cell" / "steps.jsonl").read_text().splitlines()]
    assert len(records) == 2 and all(r["layer_cos"] and r["module_cos"] for r in records)


def test_a_finished_cell_is_archived_and_its_figures_rebuild_from_the_archive(tmp_path):
    out, archive = tmp_path / "out" / "seed1", tmp_path / "archive"
    summaries = []
    for name, every in (("base", 20), ("batch4", 4)):
        (out / name).mkdir(parents=True)
        recs = _records(20, every)
        (out / name / "steps.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
        s = study.summarize_cell({"name": name, "factor": "base" if name == "base" else "batch", "value": name}, recs, 5.0)
        (out / name / "cell.json").write_text(json.dumps(s))
        study.archive_cell(out / name, archive / "seed1")
        summaries.append(s)
    first = (archive / "seed1" / "batch4.steps.jsonl.gz").read_bytes()
    study.archive_cell(out / "batch4", archive / "seed1")
    assert (archive / "seed1" / "batch4.steps.jsonl.gz").read_bytes() == first  # deterministic bytes
    lost = tmp_path / "lost"  # a fresh clone: no run folders
    assert study.finished_summary(lost / "batch4", archive / "seed1") == (json.loads(json.dumps(summaries[1])), "archive")
    assert study.finished_summary(lost / "batch4", None) is None
    assert study.load_steps(lost / "batch4", archive / "seed1") == _records(20, 4)
    figs = study.figures(summaries, lost, tmp_path / "figures", archive)
    assert figs == ["conflict_study_rates.png", "conflict_study_heatmap.png"]


def test_report_only_without_runs_or_archive_uses_the_committed_summary_and_keeps_the_heat_map(tmp_path, capsys):
    report_dir = tmp_path / "docs"
    (report_dir / "figures").mkdir(parents=True)
    base = study.summarize_cell({"name": "base", "factor": "base", "value": "LCNN"}, _records(20, 20), 5.0)
    (report_dir / "conflict_study.json").write_text(json.dumps({"seed": 1, "cells": [base]}))
    (report_dir / "figures" / "conflict_study_heatmap.png").write_bytes(b"committed figure")
    report = report_dir / "RESULTS.md"
    report.write_text("# R\n")
    assert study.main(["--report-only", "--cells", "base", "--report", str(report), "--out", str(tmp_path / "out"),
                       "--archive", str(tmp_path / "empty_archive"), "--minibench", str(tmp_path)]) == 0
    said = capsys.readouterr().out
    assert "base: from the committed docs/conflict_study.json" in said and "left as it is" in said
    assert (report_dir / "figures" / "conflict_study_heatmap.png").read_bytes() == b"committed figure"
    assert "| base | LCNN | 20 |" in report.read_text()
    (report_dir / "conflict_study.json").write_text("[1, 2]")
    with pytest.raises(SystemExit, match="conflict_study.json: not a conflict-study summary"):
        study.main(["--report-only", "--cells", "base", "--report", str(report), "--out", str(tmp_path / "out"),
                    "--archive", "-", "--minibench", str(tmp_path)])


def _archive_run(archive, seed, name, factor, recs, seconds=5.0):
    run = archive.parent / "runs" / f"seed{seed}" / name
    run.mkdir(parents=True)
    (run / "steps.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    s = study.summarize_cell({"name": name, "factor": factor, "value": name}, recs, seconds)
    (run / "cell.json").write_text(json.dumps(s))
    study.archive_cell(run, archive / f"seed{seed}")
    return s


def test_combine_seeds_pools_the_steps_and_keeps_each_seed():
    cell = {"name": "base", "factor": "base", "value": "LCNN"}
    a, b = _records(20, 4), _records(20, 20)  # 5 and 1 conflicts of 20
    sa, sb = study.summarize_cell(cell, a, 10.0), study.summarize_cell(cell, b, 30.0)
    row = study.combine_seeds(cell, {1: (sa, a), 2: (sb, b)})
    assert (row["steps"], row["conflicts"]) == (40, 6) and row["conflict_ci"] == pytest.approx(study.wilson(6, 40))
    assert row["seeds"] == [1, 2] and [p["conflict_rate"] for p in row["per_seed"]] == pytest.approx([0.25, 0.05])
    assert row["seconds"] == pytest.approx(20.0)  # mean per run
    assert row["layer"]["cnn.0"]["conflict_rate"] == 1.0 and row["module"]["cnn"]["conflict_rate"] == pytest.approx(6 / 40)
    assert row["conflict_rate_first_half"] == pytest.approx((sa["conflict_rate_first_half"]
                                                              + sb["conflict_rate_first_half"]) / 2)
    only = study.combine_seeds(cell, {1: (sa, None), 2: (sb, b)})  # a seed without records: summaries only
    assert (only["steps"], only["conflicts"]) == (40, 6) and only["layer"] == {}
    assert only["mean_cos"] == pytest.approx((sa["mean_cos"] + sb["mean_cos"]) / 2)
    json.dumps(row)


def test_heat_map_pools_the_bins_of_every_seed():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    a = _records(4, 1)  # every step conflicts in cnn (module_cos -0.2)
    b = _records(4, 100)  # only the first step
    fig, ax = plt.subplots()
    im = study.heat_map(ax, [a, b], "module_cos", 2, "t")
    grid = im.get_array()
    plt.close(fig)
    # row cnn: bin 1 = steps 1-2 of both runs: 3 of 4 negative; bin 2: 2 of 4
    assert grid[0].tolist() == pytest.approx([75.0, 50.0]) and grid[1].tolist() == pytest.approx([0.0, 0.0])


def test_report_only_pools_the_archived_seeds(tmp_path, capsys):
    archive = tmp_path / "archive"
    _archive_run(archive, 1, "base", "base", _records(20, 4))
    _archive_run(archive, 2, "base", "base", _records(20, 20))
    _archive_run(archive, 1, "batch4", "batch", _records(20, 2))
    report = tmp_path / "docs" / "RESULTS.md"
    report.parent.mkdir()
    report.write_text("# R\n")
    assert study.main(["--report-only", "--cells", "base", "batch4", "--seeds", "1", "2", "--report", str(report),
                       "--out", str(tmp_path / "fresh"), "--archive", str(archive), "--minibench", str(tmp_path)]) == 0
    text = report.read_text()
    assert "| base | LCNN, RawBoost 4, batch 16, lr 1e-3 | 40 | 15.0 % (" in text and "| 25.0 / 5.0 |" in text
    assert "| batch | 4 | 20 | 50.0 % (" in text and "batch4 seed 2" in text  # the run still missing is named
    assert (report.parent / "figures" / "conflict_study_heatmap.png").stat().st_size > 0  # rebuilt from the archive
    saved = json.loads((report.parent / "conflict_study.json").read_text())
    assert saved["seeds"] == [1, 2] and [p["seed"] for p in saved["cells"][0]["per_seed"]] == [1, 2]


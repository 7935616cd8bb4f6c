"""bench/minibench_archive.py and the archive in bench/minibench.py: tables from the archive alone."""

from __future__ import annotations

import gzip
import json
import shutil
import sys

import pytest
import yaml

from dpda.config import dump_yaml
from tests.conftest import REPO_ROOT
from tests.test_bench_minibench import _scored_grid, runner

archive = sys.modules[runner.CellStore.__module__]  # bench/minibench_archive.py, as bench/minibench.py imported it

SEEDS = (1, 2, 3)


def _finished_grid(tmp_path, seeds=SEEDS):
    """``_scored_grid``'s cells completed into finished runs (summary, metrics, configs, env) and a grid file."""
    mb, out, _ = _scored_grid(tmp_path, seeds=seeds)
    grid_path = tmp_path / "grid.yaml"
    grid_path.write_text(yaml.safe_dump({"seeds": list(seeds), "baseline": "dual", "methods": [
        {"name": "dual", "label": "dual", "set": {"train.mode": "dual"}},
        {"name": "pcgrad", "label": "PCGrad", "set": {"train.mode": "dpda", "train.aligner.name": "pcgrad"}}]}))
    base = yaml.safe_load((REPO_ROOT / "configs" / "minibench" / "base.yaml").read_text())
    for m in runner.load_grid(grid_path)["methods"]:
        for seed in seeds:
            run_dir = out / m["name"] / f"seed{seed}"
            cfg = runner.cell_config(base, m, seed, mb, [])
            (out / m["name"] / f"seed{seed}.yaml").write_text(dump_yaml(cfg))
            (run_dir / "config.yaml").write_text(dump_yaml(cfg))
            result = json.loads((run_dir / "result.json").read_text())
            (run_dir / "metrics.jsonl").write_text("".join(
                json.dumps({"type": "step", "step": 1, "loss": 0.7}) + "\n" + json.dumps({"type": "epoch", **e}) + "\n"
                for e in result["per_epoch"]))
            (run_dir / "summary.json").write_text(json.dumps({
                "run_dir": str(run_dir), "epochs": 2, "best_epoch": 2, "final_dev_eer": (1.0 if m["name"] == "pcgrad"
                                                                                        else 2.0) + seed,
                "final_dev_loss": 0.4, "plots": {"loss": str(run_dir / "plots" / "loss.png")}}))
            (run_dir / "env.json").write_text(json.dumps({"torch": "2.13.0", "threads": 1,
                                                          "argv": ["dpda", "train", "--run-dir", str(run_dir)]}))
    return mb, out, grid_path


def _args(mb, out, grid_path, *more):
    return ["--minibench", str(mb), "--out", str(out), "--grid", str(grid_path), "--boot", "200", *more]


def _table(report):
    return report.read_text().split(runner.BEGIN)[1].split(runner.END)[0]


def _tree(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_tables_from_the_archive_alone_equal_those_from_the_run_folders(tmp_path, capsys):
    mb, out, grid_path = _finished_grid(tmp_path)
    store_root = tmp_path / "archive"
    # the tables from the run folders, no archive
    from_runs = tmp_path / "a" / "RESULTS.md"
    assert runner.main(_args(mb, out, grid_path, "--archive", "-", "--report", str(from_runs))) == 0
    # archive them, then lose the run folders (a fresh clone) and build the tables again
    assert runner.main(_args(mb, out, grid_path, "--archive", str(store_root), "--archive-only")) == 0
    assert "archived 6 run(s)" in capsys.readouterr().out
    cell_dir = store_root / "out" / "pcgrad" / "seed2"
    assert sorted(p.name for p in cell_dir.iterdir()) == ["cell.json", "eval.txt.gz", "ood_dev.txt.gz"]
    shutil.move(str(out), str(tmp_path / "lost"))
    from_archive = tmp_path / "b" / "RESULTS.md"
    assert runner.main(_args(mb, out, grid_path, "--archive", str(store_root), "--report", str(from_archive))) == 0
    said = capsys.readouterr().out
    assert said.count("finished earlier, skipped (archived") == 6 and "seed 1: training" not in said
    assert _table(from_archive) == _table(from_runs)
    assert "| PCGrad | eval |" in _table(from_archive) and "**better**" in _table(from_archive)  # paired, from scores
    assert (from_archive.parent / "figures" / "minibench_paired.png").stat().st_size > 0
    assert not any(out.rglob("result.json"))  # nothing was trained
    # --status counts the archived cells, with their archived wall times
    assert runner.main(_args(mb, out, grid_path, "--archive", str(store_root), "--status")) == 0
    said = capsys.readouterr().out
    assert "6/6 cells finished, 0 left" in said and "dual seed 1: finished [archived] (120 s)" in said


def test_a_cell_is_archived_deterministically_and_small(tmp_path):
    mb, out, grid_path = _finished_grid(tmp_path, seeds=(1,))
    run_dir = out / "dual" / "seed1"
    cfg = yaml.safe_load((out / "dual" / "seed1.yaml").read_text())
    first, second = tmp_path / "one", tmp_path / "two"
    archive.write_cell(run_dir, first, cell_config=cfg, minibench=mb, out=out, repo=REPO_ROOT)
    # the same run from another checkout path: same bytes (paths are written relative to placeholders)
    moved = tmp_path / "elsewhere" / "out"
    shutil.copytree(out, moved)
    env = moved / "dual" / "seed1" / "env.json"  # written by that run, with its own paths
    env.write_text(env.read_text().replace(str(out), str(moved)))
    archive.write_cell(moved / "dual" / "seed1", second, cell_config=runner.cell_config(
        yaml.safe_load((REPO_ROOT / "configs" / "minibench" / "base.yaml").read_text()),
        runner.load_grid(grid_path)["methods"][0], 1, mb, []), minibench=mb, out=moved, repo=REPO_ROOT)
    assert _tree(first) == _tree(second)
    archive.write_cell(run_dir, first, cell_config=cfg, minibench=mb, out=out, repo=REPO_ROOT)  # again: unchanged
    assert _tree(first) == _tree(second)
    blob = (first / "eval.txt.gz").read_bytes()
    assert blob[4:8] == b"\0\0\0\0"  # gzip mtime 0
    assert gzip.decompress(blob) == (run_dir / "scores" / "eval.txt").read_bytes()
    cell = json.loads((first / "cell.json").read_text())
    assert str(tmp_path) not in (first / "cell.json").read_text()
    assert cell["cell_config"]["data"]["train"]["protocol"] == "<minibench>/protocols/minibench.train.txt"
    assert cell["result"]["final_dev_eer"] == 3.0  # filled from the summary
    assert [e["epoch"] for e in cell["epochs"]] == [1, 2] and cell["walls"] == {"train": 100.0, "score": 20.0}
    prov = cell["provenance"]["bench"]
    assert {"commit", "cpu_model", "torch", "numpy", "cpu_capability", "numerics_env"} <= set(prov)
    assert cell["provenance"]["run_env"]["threads"] == 1
    assert sum(len(b) for b in _tree(first).values()) < 60_000


@pytest.mark.parametrize("damage", ["missing_scores", "truncated_gzip", "changed_scores", "bad_json", "wrong_format"])
def test_a_damaged_archive_names_the_file(tmp_path, damage):
    mb, out, grid_path = _finished_grid(tmp_path)
    store_root = tmp_path / "archive"
    assert runner.main(_args(mb, out, grid_path, "--archive", str(store_root), "--archive-only")) == 0
    shutil.rmtree(out)
    cell_dir = store_root / "out" / "pcgrad" / "seed2"
    target = {"missing_scores": "eval.txt.gz", "truncated_gzip": "eval.txt.gz", "changed_scores": "eval.txt.gz",
              "bad_json": "cell.json", "wrong_format": "cell.json"}[damage]
    path = cell_dir / target
    if damage == "missing_scores":
        path.unlink()
    elif damage == "truncated_gzip":
        path.write_bytes(path.read_bytes()[:40])
    elif damage == "changed_scores":
        path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes()).replace(b"MB_eval_000 ", b"MB_eval_000 1")))
    elif damage == "bad_json":
        path.write_text(path.read_text()[:100])
    else:
        path.write_text(json.dumps({"format": "something else"}))
    want = {"missing_scores": "missing", "truncated_gzip": "corrupt gzip",
            "changed_scores": "does not match the sha256",
            "bad_json": "unreadable", "wrong_format": "not an archived minibench cell"}[damage]
    with pytest.raises(archive.ArchiveError, match=f"{path}: .*{want}"):
        runner.main(_args(mb, out, grid_path, "--archive", str(store_root), "--report", str(tmp_path / "R.md")))


def test_an_archived_cell_with_another_config_stops_the_grid(tmp_path):
    mb, out, grid_path = _finished_grid(tmp_path, seeds=(1,))
    store_root = tmp_path / "archive"
    assert runner.main(_args(mb, out, grid_path, "--archive", str(store_root), "--archive-only")) == 0
    with pytest.raises(archive.ArchiveError, match=r"dual/seed1: archived with another config .*train.epochs: 8 -> 2"):
        runner.main(_args(mb, out, grid_path, "--archive", str(store_root), "--set", "train.epochs=2",
                          "--report", "-"))


def test_retrain_compares_the_rerun_with_the_archive(tmp_path, capsys):
    mb, out, grid_path = _finished_grid(tmp_path)
    store_root = tmp_path / "archive"
    assert runner.main(_args(mb, out, grid_path, "--archive", str(store_root), "--archive-only")) == 0
    archived = _tree(store_root)
    # a rerun elsewhere: dual seed 2 came out differently (the run folders hold the reruns)
    path = out / "dual" / "seed2" / "result.json"
    rerun = json.loads(path.read_text())
    rerun["eer"]["eval"] += 1.5
    rerun["best_epoch"] = 1
    path.write_text(json.dumps(rerun))
    (out / "dual" / "seed2" / "bench_env.json").write_text(json.dumps({"cpu_model": "Other CPU"}))
    report = REPO_ROOT / "docs" / "RESULTS.md"
    before = report.read_bytes()
    assert runner.main(_args(mb, out, grid_path, "--archive", str(store_root), "--retrain")) == 0
    said = capsys.readouterr().out
    assert "6 cell(s) in both, 5 identical; differ: dual seed 2" in said
    assert "### Reruns against the archive" in said and "| dual seed 1 |" in said
    row = next(line for line in said.splitlines() if line.startswith("| dual seed 2 |"))
    assert "**differs**" in row and "+1.50" in row and "Other CPU" in row
    assert report.read_bytes() == before  # --retrain leaves the report alone unless --report is given
    assert _tree(store_root) == archived  # and the archive too
    results = json.loads((out / "results.json").read_text())
    assert results["sources"]["dual"]["2"] == "runs"
    assert [r["eer"]["eval"] for r in results["results"]["dual"] if r["seed"] == 2] == [rerun["eer"]["eval"]]
    # without --retrain the tables use the archive, and the disagreement is said
    assert runner.main(_args(mb, out, grid_path, "--archive", str(store_root), "--report", "-")) == 0
    said = capsys.readouterr().out
    assert "differ: dual seed 2" in said and "the tables use the archived runs" in said
    assert json.loads((out / "results.json").read_text())["sources"]["dual"]["2"] == "archive"


def test_archive_only_skips_archived_cells_and_unfinished_ones(tmp_path, capsys):
    mb, out, grid_path = _finished_grid(tmp_path, seeds=(1, 2))
    shutil.rmtree(out / "pcgrad" / "seed2")
    store_root = tmp_path / "archive"
    assert runner.main(_args(mb, out, grid_path, "--archive", str(store_root), "--archive-only")) == 0
    assert "archived 3 run(s)" in capsys.readouterr().out
    first = _tree(store_root)
    assert runner.main(_args(mb, out, grid_path, "--archive", str(store_root), "--archive-only")) == 0
    said = capsys.readouterr().out
    assert "archived 0 run(s)" in said and "3 were archived already, 1 cell(s) have no finished run" in said
    assert _tree(store_root) == first
    store = runner.CellStore(out, store_root)
    todo = runner.expected_left(store, [(s, m) for s in (1, 2) for m in ("dual", "pcgrad")])
    assert todo["finished"] == 3 and todo["left"] == [(2, "pcgrad")] and todo["seconds"] == pytest.approx(80.0)


def test_no_train_builds_the_tables_over_the_seeds_every_method_finished(tmp_path, capsys):
    """``--no-train``: cells that are not finished are left alone (nothing trains), the tables use the seeds that
    every method has finished, and a grid without one says how far it is instead of a table."""
    mb, out, grid_path = _finished_grid(tmp_path)
    shutil.rmtree(out / "pcgrad" / "seed3")  # seed 3 is not finished by every method
    report = tmp_path / "RESULTS.md"
    assert runner.main(_args(mb, out, grid_path, "--archive", "-", "--no-train", "--report", str(report))) == 0
    said = capsys.readouterr().out
    assert "seed 3: training" not in said and not (out / "pcgrad" / "seed3").exists()
    table = _table(report)
    assert "same sign on 2 of 2 seeds" in table
    first_row = next(line for line in table.splitlines() if line.startswith("| dual |"))
    assert first_row.count("/") == 2  # per seed: two values (seeds 1 and 2) in each split's column
    for seed in (1, 2):
        shutil.rmtree(out / "pcgrad" / f"seed{seed}")
    assert runner.main(_args(mb, out, grid_path, "--archive", "-", "--no-train", "--report", str(report))) == 0
    assert report.read_text().count(runner.BEGIN) == 1 and "same sign on 2 of 2 seeds" in report.read_text()  # kept
    fresh = tmp_path / "fresh.md"
    assert runner.main(_args(mb, out, grid_path, "--archive", "-", "--no-train", "--report", str(fresh))) == 0
    assert "Not finished: 3 of 6 cells, no seed finished by every method" in fresh.read_text()


def test_all_runs_every_grid_into_its_section_and_refuses_per_grid_options(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(runner, "main", lambda argv: calls.append(argv) or 0, raising=True)
    monkeypatch.setattr(runner.subprocess, "run", lambda cmd: calls.append(cmd) or type("P", (), {"returncode": 0}))
    args = runner.argparse.Namespace(status=False, no_stats=True, no_train=True, report=tmp_path / "R.md", jobs=2,
                                     deadline=1234.5)
    assert runner.run_all(args, ["--all", "--no-train", "--no-stats", "--report", str(tmp_path / "R.md")]) == 0
    grids = [c[c.index("--grid") + 1] for c in calls[:-1]]
    assert [g.rsplit("/", 1)[-1] for g in grids] == list(runner.ALL_GRIDS)
    assert all("--no-train" in c and "--no-stats" in c and str(tmp_path / "R.md") in c for c in calls[:-1])
    assert all(c[c.index("--jobs") + 1] == "2" for c in calls[:-1])
    assert all(float(c[c.index("--deadline") + 1]) == 1234.5 for c in calls[:-1])  # one time limit for all grids
    assert calls[-1][1].endswith("conflict_study.py") and "--report-only" in calls[-1]
    sections = {runner.load_grid(REPO_ROOT / "configs" / "minibench" / g)["section"] for g in runner.ALL_GRIDS}
    assert sections == {"main", "split", "batch4", "equal_compute", "converge"}
    with pytest.raises(SystemExit, match="leave out --grid"):
        runner.run_all(args, ["--all", "--grid", "x.yaml"])
    calls.clear()  # a grid stopped by the time limit stops --all there, with its exit code
    monkeypatch.setattr(runner, "main", lambda argv: calls.append(argv) or runner.EXIT_TIME_LIMIT, raising=True)
    assert runner.run_all(args, ["--all", "--stop-after", "1"]) == runner.EXIT_TIME_LIMIT and len(calls) == 1


def test_every_committed_archived_cell_is_complete_and_its_scores_match_their_checksums():
    """The cells committed in docs/results: each cell.json is well-formed and every score file decompresses to
    the content its sha256 names (a truncated or hand-edited archive fails here, not in a later sitting)."""
    cells = sorted((REPO_ROOT / "docs" / "results").glob("*/*/seed*/cell.json"))
    assert cells, "no archived cells under docs/results"
    for path in cells:
        cell = archive.read_cell(path.parent)
        assert path.parent.name == f"seed{cell['result']['seed']}" and path.parent.parent.name == cell["result"]["method"]
        for split in cell["scores"]:
            scores = archive.parse_scores(archive.read_scores_text(path.parent, cell, split), path.parent / split)
            assert len(scores) == cell["scores"][split]["lines"], (path, split)
    for path in sorted((REPO_ROOT / "docs" / "results" / "conflict_study").glob("*.json")):
        summary = json.loads(path.read_text())
        steps = gzip.decompress(path.with_name(f"{path.stem}.steps.jsonl.gz").read_bytes()).decode().splitlines()
        assert summary["name"] == path.stem and len(steps) == summary["steps"]


def test_provenance_records_the_variables_that_select_kernels(monkeypatch):
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    monkeypatch.delenv("NPY_DISABLE_CPU_FEATURES", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    prov = archive.machine_provenance(REPO_ROOT, "test")
    assert prov["numerics_env"].get("OPENBLAS_CORETYPE") == "Haswell"
    assert "NPY_DISABLE_CPU_FEATURES" not in prov["numerics_env"]
    assert prov["thread_env"]["OMP_NUM_THREADS"] == "1" and prov["recorded"] == "test"

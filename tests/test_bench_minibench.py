"""bench/minibench.py: the grid runner on a tiny stand-in corpus with minibench's layout."""

from __future__ import annotations

import importlib.util
import json
import os

import numpy as np
import pytest
import soundfile as sf
import yaml

from dpda.data import load_manifest
from dpda.evaluation import evaluate_scores, join_scores, read_scores
from tests.conftest import REPO_ROOT


def _load_runner():
    spec = importlib.util.spec_from_file_location("bench_minibench", REPO_ROOT / "bench" / "minibench.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


runner = _load_runner()


def _fake_minibench(root, per_class=6):
    """minibench's layout (protocols/minibench.<split>.txt, flac/<split>/), noise as audio."""
    rng = np.random.default_rng(0)
    for split in ("train", "dev", "eval", "ood_dev"):
        (root / "flac" / split).mkdir(parents=True)
        lines = []
        for i in range(2 * per_class):
            spoof = i % 2 == 1
            x = rng.standard_normal(8000).astype(np.float32) * 0.1
            if not spoof:  # bona fide: smoothed (low-passed) noise, spoof: white noise
                x = np.convolve(x, np.ones(8) / 8, mode="same").astype(np.float32)
            utt = f"MB_{split}_{i:03d}"
            sf.write(root / "flac" / split / f"{utt}.flac", x, 16000)
            lines.append(f"SPK{i % 3} {utt} - {'S1' if spoof else '-'} {'spoof' if spoof else 'bonafide'}")
        (root / "protocols").mkdir(exist_ok=True)
        (root / "protocols" / f"minibench.{split}.txt").write_text("\n".join(lines) + "\n")
    return root


def test_shipped_grid_is_valid_and_covers_the_issue_grid():
    grid = runner.load_grid(REPO_ROOT / "configs" / "minibench" / "grid.yaml")
    assert grid["seeds"] == [1, 2, 3] and grid["baseline"] == "dual"
    by_name = {m["name"]: m["set"] for m in grid["methods"]}
    assert by_name["single"]["train.mode"] == "single"
    assert by_name["dual"]["train.mode"] == "dual"
    for name in ("pcgrad", "gradvac", "cagrad"):
        assert by_name[name] == {"train.mode": "dpda", "train.aligner.name": name}
    assert by_name["pcgrad_split"]["train.engine_mode"] == "split"


@pytest.mark.parametrize("name", ["grid_split_control.yaml", "grid_batch4.yaml", "grid_equal_compute.yaml",
                                  "grid_converge.yaml"])
def test_supplementary_grids_are_valid(name):
    grid = runner.load_grid(REPO_ROOT / "configs" / "minibench" / name)
    main = {m["name"]: m["set"] for m in runner.load_grid(REPO_ROOT / "configs" / "minibench" / "grid.yaml")["methods"]}
    if grid.get("out", "runs/minibench") != "runs/minibench":
        return  # its own run folder: nothing is shared with the main grid
    assert not grid.get("set"), "grid-wide overrides in the main grid's folder would make same-named cells differ"
    assert grid.get("threads") == runner.load_grid(REPO_ROOT / "configs" / "minibench" / "grid.yaml")["threads"], (
        "shared cells must be computed with the same number of threads")
    for m in grid["methods"]:  # a cell that shares a main-grid name must be that same cell (it is reused)
        if m["name"] in main:
            assert m["set"] == main[m["name"]]


@pytest.mark.parametrize("threads", [0, -1, 1.5, "2", True])
def test_a_bad_thread_count_is_refused_naming_the_grid(tmp_path, threads):
    path = tmp_path / "grid.yaml"
    path.write_text(f"threads: {threads!r}\nbaseline: a\nmethods:\n  - {{name: a, set: {{}}}}\n")
    with pytest.raises(SystemExit, match=r"grid\.yaml: threads: expected a positive integer"):
        runner.load_grid(path)


def test_pin_threads_sets_the_environment_of_the_training_subprocesses(monkeypatch):
    import torch

    before = torch.get_num_threads()
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    try:
        runner.pin_threads(1, "grid")
        assert os.environ["OMP_NUM_THREADS"] == "1" and os.environ["MKL_NUM_THREADS"] == "1"
        assert torch.get_num_threads() == 1
        runner.pin_threads(None, "grid")  # no threads in the grid: nothing changes
        assert os.environ["OMP_NUM_THREADS"] == "1"
    finally:
        torch.set_num_threads(before)


def test_grid_cells_resolve_to_valid_run_configs(tmp_path):
    """Every cell of the equal-compute and convergence grids is a config that dpda train accepts."""
    from dpda.config import from_dict
    from dpda.train.config import RunConfig, check_buildable, validate

    base = yaml.safe_load((REPO_ROOT / "configs" / "minibench" / "base.yaml").read_text())
    seen = {}
    for name in ("grid_equal_compute.yaml", "grid_converge.yaml"):
        grid = runner.load_grid(REPO_ROOT / "configs" / "minibench" / name)
        for m in grid["methods"]:
            cfg = validate(from_dict(RunConfig, runner.cell_config(base, m, 1, tmp_path, [])))
            check_buildable(cfg)
            seen[(name, m["name"])] = cfg
    w = seen[("grid_equal_compute.yaml", "weighted_r25")].train.aligner
    assert w.name == "weighted" and w.options == {"weights": [0.25, 0.75]}
    single = seen[("grid_equal_compute.yaml", "single_b32")]
    assert single.train.mode == "single" and single.data.batch_size == 32 and single.train.steps_per_epoch == 18
    conv = seen[("grid_converge.yaml", "pcgrad_split")]
    assert conv.train.steps_per_epoch is None and conv.train.epochs == 40 and conv.train.engine_mode == "split"
    assert len(runner.load_grid(REPO_ROOT / "configs" / "minibench" / "grid_converge.yaml")["seeds"]) >= 8


def test_grid_file_errors_name_the_problem(tmp_path):
    bad = tmp_path / "grid.yaml"
    bad.write_text(yaml.safe_dump({"seeds": [1], "baseline": "x", "methods": [{"name": "a", "set": {}}]}))
    with pytest.raises(SystemExit, match="baseline 'x'"):
        runner.load_grid(bad)


def _result(method, seed, eer_eval, eer_ood, mode="dpda", conflicts=(0.2, 0.4)):
    per_epoch = [{"epoch": i + 1, "dev_loss": 0.5, "conflict_rate": c, "steps": 10, "seconds": 2.0, "clips_per_s": 8.0,
                  "mean_norm_orig": 1.0, "mean_norm_aug": 2.0} for i, c in enumerate(conflicts)]
    return {"method": method, "seed": seed, "mode": mode, "eer": {"eval": eer_eval, "ood_dev": eer_ood},
            "per_epoch": per_epoch, "best_epoch": 2, "epochs_run": 2, "train_wall_s": 10.0, "score_wall_s": 5.0}


def test_summary_relative_change_and_conflicts():
    grid = {"baseline": "dual", "methods": [{"name": "single"}, {"name": "dual"}, {"name": "pcgrad"}]}
    results = {"single": [_result("single", 1, 12.0, 30.0, mode="single")],
               "dual": [_result("dual", 1, 10.0, 20.0), _result("dual", 2, 12.0, 30.0)],
               "pcgrad": [_result("pcgrad", 1, 9.0, 20.0), _result("pcgrad", 2, 9.0, 25.0)]}
    rows = {r["method"]: r for r in runner.summarize(grid, results)["rows"]}
    assert rows["pcgrad"]["eval_rel"] == pytest.approx(100 * (9.0 - 11.0) / 11.0)
    assert rows["pcgrad"]["ood_dev_rel"] == pytest.approx(100 * (22.5 - 25.0) / 25.0)
    assert rows["dual"]["eval_std"] == pytest.approx(np.std([10.0, 12.0], ddof=1))
    assert rows["pcgrad"]["conflict_overall"] == pytest.approx(30.0)
    assert rows["pcgrad"]["conflict_first"] == pytest.approx(20.0) and rows["pcgrad"]["conflict_last"] == pytest.approx(40.0)
    assert rows["single"]["conflict_overall"] is None  # one path: no conflict to measure
    table = runner.markdown(runner.summarize(grid, results), None)
    assert "| dual | 11.00 ± 1.41 | 10.00 / 12.00 | – |" in table
    assert "-18.2 %" in table


def test_report_section_is_replaced_and_the_rest_kept(tmp_path):
    report = tmp_path / "RESULTS.md"
    report.write_text("# Title\n\nintro\n")
    runner.write_report(report, "table one\n")
    runner.write_report(report, "table two\n")
    text = report.read_text()
    assert text.startswith("# Title\n\nintro\n") and "table two" in text and "table one" not in text
    report.write_text(text + "\nafterword\n")
    runner.write_report(report, "table three\n")
    final = report.read_text()
    assert final.endswith("afterword\n") and final.count(runner.BEGIN) == 1 and "table three" in final
    runner.write_report(report, "supplement\n", section="b4")  # a second generated section, added then replaced
    runner.write_report(report, "supplement two\n", section="b4")
    final = report.read_text()
    assert "table three" in final and "supplement two" in final and "supplement\n" not in final
    assert final.count("<!-- minibench:b4:begin -->") == 1


@pytest.mark.slow
def test_grid_runs_scores_and_skips_finished_cells(tmp_path, capsys):
    mb = _fake_minibench(tmp_path / "mb")
    out, report = tmp_path / "out", tmp_path / "docs" / "RESULTS.md"
    args = ["--minibench", str(mb), "--out", str(out), "--report", str(report), "--archive", str(tmp_path / "archive"),
            "--seeds", "1",
            "--methods", "dual", "pcgrad", "--set", "data.crop_samples=4000", "--set", "data.batch_size=2",
            "--set", "train.epochs=2", "--set", "train.steps_per_epoch=2", "--set", "train.top_k=1"]
    assert runner.main(args) == 0
    first = capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    for method in ("dual", "pcgrad"):
        [res] = results["results"][method]
        run_dir = out / method / "seed1"
        assert res["epochs_run"] == 2 and len(res["per_epoch"]) == 2
        assert all(e["steps"] == 2 for e in res["per_epoch"])  # train.steps_per_epoch reached the trainer
        # the score files are complete and re-score to the EER in the table
        for split in ("eval", "ood_dev"):
            manifest = load_manifest("asvspoof2019", mb / "protocols" / f"minibench.{split}.txt", mb / "flac" / split)
            rescored = evaluate_scores(join_scores(manifest, read_scores(run_dir / "scores" / f"{split}.txt")),
                                       fmt="asvspoof2019")["eer"]
            assert rescored == pytest.approx(res["eer"][split])
            assert f"{res['eer'][split]:.2f}" in first
    cfg = yaml.safe_load((out / "pcgrad" / "seed1.yaml").read_text())
    assert cfg["train"]["aligner"]["name"] == "pcgrad" and cfg["seed"] == 1
    assert cfg["data"]["train"]["protocol"] == str(mb / "protocols" / "minibench.train.txt")
    text = report.read_text()
    assert runner.BEGIN in text and (report.parent / "figures" / "minibench_conflict_rate.png").stat().st_size > 0
    assert text.split(runner.BEGIN)[1].split(runner.END)[0].strip().endswith(
        (out / "results.md").read_text().strip().splitlines()[-1])

    # each cell was archived as it finished, with the provenance recorded when it started training
    for method in ("dual", "pcgrad"):
        cell = json.loads((tmp_path / "archive" / "out" / method / "seed1" / "cell.json").read_text())
        assert cell["result"] == {**results["results"][method][0], "final_dev_eer": cell["result"]["final_dev_eer"],
                                  "final_dev_loss": cell["result"]["final_dev_loss"]}
        assert cell["provenance"]["bench"]["recorded"] == "training start"
        assert cell["provenance"]["run_env"]["argv"][-2:] == ["--run-dir", f"<out>/{method}/seed1"]

    # rerun: both cells are skipped, nothing is retrained, the table is the same
    stamp = (out / "dual" / "seed1" / "model.pt").stat().st_mtime_ns
    assert runner.main(args) == 0
    second = capsys.readouterr().out
    assert second.count("finished earlier, skipped") == 2
    assert (out / "dual" / "seed1" / "model.pt").stat().st_mtime_ns == stamp
    assert (out / "results.md").read_text() in second


def _scored_grid(tmp_path, shift=3.0, seeds=(1, 2, 3), write_scores=True):
    """A finished grid without training: each cell's result.json, bench_wall.json and score files.

    ``pcgrad``'s bona fide scores are ``shift`` higher than ``dual``'s on every trial (so it is better
    on every seed); the spoof scores and the seed's noise are shared by both methods.
    """
    from dpda.metrics import compute_eer

    mb = _fake_minibench(tmp_path / "mb", per_class=20)
    out = tmp_path / "out"
    rng = np.random.default_rng(0)
    results = {"dual": [], "pcgrad": []}
    for seed in seeds:
        noise = {s: rng.standard_normal(40) for s in ("eval", "ood_dev")}
        for method, add in (("dual", 0.0), ("pcgrad", shift)):
            run_dir = out / method / f"seed{seed}"
            (run_dir / "scores").mkdir(parents=True)
            eers = {}
            for split in ("eval", "ood_dev"):
                m = load_manifest("asvspoof2019", mb / "protocols" / f"minibench.{split}.txt", mb / "flac" / split)
                bona = np.array([u.label == "bonafide" for u in m.utterances])
                scores = noise[split] + bona * (0.5 + add)
                if write_scores:
                    (run_dir / "scores" / f"{split}.txt").write_text(
                        "".join(f"{u.utt_id} {v:.6f}\n" for u, v in zip(m.utterances, scores)))
                eers[split] = 100 * compute_eer(scores[bona], scores[~bona])[0]
            res = _result(method, seed, eers["eval"], eers["ood_dev"])
            res["per_attack"] = {split: {"S1": eer} for split, eer in eers.items()}  # the only attack
            (run_dir / "result.json").write_text(json.dumps(res))
            (run_dir / "bench_wall.json").write_text(json.dumps({"train": 100.0 if method == "dual" else 60.0,
                                                                 "score": 20.0}))
            results[method].append(res)
    return mb, out, results


def test_paired_statistics_from_the_score_files(tmp_path):
    mb, out, results = _scored_grid(tmp_path)
    grid = {"baseline": "dual", "methods": [{"name": "dual", "label": "dual"}, {"name": "pcgrad", "label": "PCGrad"}]}
    stats = runner.paired_stats(grid, results, out, mb, n_boot=300, n_boot_attack=200)
    for split in ("eval", "ood_dev"):
        entry = stats["splits"][split]
        assert entry["n_bona"] == 20 and entry["attack_spoofs"] == {"S1": 20}
        p = entry["methods"]["pcgrad"]["pooled"]
        assert p["trials"] == "shared" and p["trial_counts"] == (20, 20) and p["seeds"] == [1, 2, 3]
        want = [r["eer"][split] - b["eer"][split] for r, b in zip(results["pcgrad"], results["dual"])]
        assert p["diff"] == pytest.approx(want, abs=1e-9)  # the score files give the tables' EERs
        assert p["direction"] == "better" and p["ci"][1] < 0
        assert entry["methods"]["pcgrad"]["per_attack"]["S1"]["trial_counts"] == (20, 20)
    summary = runner.summarize(grid, results)
    table = runner.markdown(summary, "figures", stats=stats)
    assert "### Paired differences against dual" in table and "| PCGrad | eval |" in table and "**better**" in table
    assert "### eval: EER (%) per attack, mean over seeds (all 20 bona fide" in table and "| S1 (20) |" in table
    assert "* **PCGrad, eval**: better than dual by" in table
    png = runner.plot_paired(stats, {"dual": "dual", "pcgrad": "PCGrad"}, tmp_path / "fig")
    assert png.stat().st_size > 0


def test_a_tuned_row_is_compared_from_its_candidates_score_files(tmp_path):
    mb, out, results = _scored_grid(tmp_path)
    for r in results["pcgrad"]:
        r["final_dev_eer"] = 1.0
    for r in results["dual"]:
        r["final_dev_eer"] = 2.0
    grid = {"baseline": "dual", "methods": [{"name": "dual"}, {"name": "pcgrad"}],
            "tuned": [{"name": "tuned", "candidates": ["dual", "pcgrad"]}]}
    grid["methods"] = grid["methods"] + runner.add_tuned(grid, results, out)
    stats = runner.paired_stats(grid, results, out, mb, n_boot=300, n_boot_attack=200)
    tuned = stats["splits"]["eval"]["methods"]["tuned"]["pooled"]
    assert tuned["trials"] == "shared"  # pcgrad's score files, under pcgrad's folder
    assert tuned["diff"] == stats["splits"]["eval"]["methods"]["pcgrad"]["pooled"]["diff"]


def test_paired_statistics_without_score_files_use_the_per_seed_eers(tmp_path):
    mb, out, results = _scored_grid(tmp_path, shift=0.0, write_scores=False)
    grid = {"baseline": "dual", "methods": [{"name": "dual"}, {"name": "pcgrad"}]}
    stats = runner.paired_stats(grid, results, out, mb, n_boot=300)
    p = stats["splits"]["eval"]["methods"]["pcgrad"]["pooled"]
    assert p["trials"] == "none" and p["diff"] == pytest.approx([0.0, 0.0, 0.0])
    assert "per-seed EERs only" in runner.markdown(runner.summarize(grid, results), None, stats=stats)


def test_what_is_left_and_the_time_it_should_take(tmp_path, capsys):
    mb, out, _ = _scored_grid(tmp_path, seeds=(1, 2))
    cells = [(s, m) for s in (1, 2, 3) for m in ("dual", "pcgrad", "gradvac")]
    part = out / "dual" / "seed3"
    (part / "checkpoints").mkdir(parents=True)
    (part / "checkpoints" / "last.pt").write_bytes(b"")
    (part / "bench_wall.json").write_text(json.dumps({"train": 50.0}))
    todo = runner.expected_left(out, cells)
    assert todo["finished"] == 4 and todo["total"] == 9 and todo["partial"] == [(3, "dual")]
    assert todo["per_method"] == {"dual": 120.0, "pcgrad": 80.0}
    # dual seed 3: 120 - 50 spent; pcgrad seed 3: 80; gradvac (none finished): the mean of all, 100, three times
    assert todo["seconds"] == pytest.approx(70.0 + 80.0 + 3 * 100.0)
    assert "4/9 cells finished, 5 left, 1 partly done; expected about 7 min 30 s more" in runner.progress_line("g", todo)
    assert ("expected about 3 min 45 s more with 2 cells at a time (7 min 30 s of cell time"
            in runner.progress_line("g", todo, jobs=2))
    assert runner.expected_left(tmp_path / "empty", cells)["seconds"] is None
    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump({"seeds": [1, 2, 3], "baseline": "dual", "methods": [
        {"name": n, "set": {}} for n in ("dual", "pcgrad", "gradvac")]}))
    assert runner.main(["--minibench", str(mb), "--out", str(out), "--grid", str(grid), "--status"]) == 0
    said = capsys.readouterr().out
    assert "4/9 cells finished" in said and "dual seed 3: partial (50 s)" in said and "gradvac seed 1: todo" in said


def test_a_tuned_row_is_chosen_on_dev_only(tmp_path):
    grid_path = tmp_path / "grid.yaml"
    grid_path.write_text(yaml.safe_dump({"seeds": [1, 2], "baseline": "dual", "methods": [
        {"name": "dual", "set": {}}, {"name": "w25", "label": "w 0.25", "set": {}}, {"name": "w75", "set": {}}],
        "tuned": [{"name": "tuned", "label": "dual, tuned weight", "candidates": ["dual", "w25", "w75"]}]}))
    grid = runner.load_grid(grid_path)
    results = {}
    for name, dev, test in (("dual", 10.0, 20.0), ("w25", 8.0, 30.0), ("w75", 9.0, 10.0)):
        results[name] = [{**_result(name, s, test, test), "final_dev_eer": dev + s} for s in (1, 2)]
    added = runner.add_tuned(grid, results, tmp_path)
    # w25 has the best dev EER (its test EER is the worst: the choice never looks at the test splits)
    assert [a["tuned_from"] for a in added] == ["w25"] and added[0]["label"] == "dual, tuned weight: w 0.25"
    assert [r["eer"]["eval"] for r in results["tuned"]] == [30.0, 30.0]
    assert all(r["method"] == "tuned" and r["tuned_from"] == "w25" for r in results["tuned"])
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"seeds": [1], "baseline": "dual", "methods": [{"name": "dual", "set": {}}],
                                   "tuned": [{"name": "t", "candidates": ["dual", "nope"]}]}))
    with pytest.raises(SystemExit, match=r"candidates \['nope'\] are not methods"):
        runner.load_grid(bad)


def test_in_order_runs_cells_side_by_side_and_keeps_the_grid_order():
    import threading
    import time

    running, peak, lock = [0], [0], threading.Lock()

    def cell(k, delay):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(delay)
        with lock:
            running[0] -= 1
        return k

    tasks = [(1, 0.15), (2, 0.01), (3, 0.08), (4, 0.01)]
    assert runner.in_order(cell, tasks, jobs=2) == [1, 2, 3, 4] and peak[0] == 2
    peak[0] = 0
    assert runner.in_order(cell, tasks) == [1, 2, 3, 4] and peak[0] == 1

    started = []

    def failing(k, delay):
        started.append(k)
        if k == 2:
            raise SystemExit("training failed (exit 1)")
        if k == 3:
            raise RuntimeError("a later failure")
        time.sleep(delay)
        return k

    # 2 fails at once while 1 is still running: 1 finishes, 3 and 4 never start, 2's failure is raised
    with pytest.raises(SystemExit, match="training failed"):
        runner.in_order(failing, tasks, jobs=2)
    assert sorted(started) == [1, 2]
    started.clear()
    with pytest.raises(SystemExit, match="training failed"):
        runner.in_order(failing, tasks)
    assert started == [1, 2]


def test_a_time_limit_interrupts_a_subprocess_and_spares_one_that_ends_before_it():
    import subprocess
    import sys
    import time

    cells = runner.minibench_cells
    quick = subprocess.Popen([sys.executable, "-c", "pass"])
    assert cells.wait_or_interrupt(quick, time.time() + 60) is False and quick.returncode == 0
    # the child says when it is ready, so the SIGINT reaches Python's handler (KeyboardInterrupt), not startup;
    # it installs that handler itself: a test process started by a shell's ``cmd &`` ignores SIGINT, and its
    # children inherit that (the grid's own answer to it, let_cells_be_interrupted, has its own test below)
    slow = subprocess.Popen([sys.executable, "-c", "import signal, sys, time\n"
                             "signal.signal(signal.SIGINT, signal.default_int_handler)\ntry:\n"
                             "    print('up', flush=True)\n    time.sleep(60)\nexcept KeyboardInterrupt:\n"
                             "    sys.exit(130)"],
                            stdout=subprocess.PIPE, text=True)
    assert slow.stdout.readline().strip() == "up"
    t0 = time.time()
    assert cells.wait_or_interrupt(slow, time.time() + 0.2, grace_s=20) is True
    assert slow.returncode == 130 and time.time() - t0 < 15  # stopped by SIGINT, not by the 60 s sleep
    slow.stdout.close()
    stubborn = subprocess.Popen([sys.executable, "-c", "import signal, sys, time\n"
                                 "signal.signal(signal.SIGINT, signal.SIG_IGN)\nprint('up', flush=True)\n"
                                 "time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    assert stubborn.stdout.readline().strip() == "up"
    assert cells.wait_or_interrupt(stubborn, time.time(), grace_s=0.5) is True
    assert stubborn.returncode == -9  # killed after the grace period
    stubborn.stdout.close()


def test_a_grid_past_its_time_limit_starts_no_cell_and_says_so(tmp_path, capsys, monkeypatch):
    mb, out, _ = _scored_grid(tmp_path, seeds=(1,))
    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump({"seeds": [1, 2], "baseline": "dual", "methods": [
        {"name": n, "set": {}} for n in ("dual", "pcgrad")]}))
    monkeypatch.setattr(runner.minibench_cells, "train_cell", lambda *a: pytest.fail("a cell was trained"))
    code = runner.main(["--minibench", str(mb), "--out", str(out), "--grid", str(grid), "--archive", "-",
                        "--report", "-", "--deadline", "1.0"])
    said = capsys.readouterr().out
    assert code == runner.EXIT_TIME_LIMIT == 3
    assert "dual seed 2: not started, the time limit is reached" in said
    assert "2/4 cells finished, 2 left" in said and "the same command continues" in said
    # a cell trained to the end (by a run whose runner was stopped) is still scored and archived after the limit
    trained = out / "dual" / "seed2"
    trained.mkdir(parents=True)
    for f in ("summary.json", "model.pt"):
        (trained / f).write_text("{}")
    scored = []
    monkeypatch.setattr(runner.minibench_cells, "train_cell", lambda *a: None)  # returns at once for a trained run
    monkeypatch.setattr(runner.minibench_cells, "score_cell", lambda run_dir, mb: scored.append(run_dir) or 1 / 0)
    with pytest.raises(ZeroDivisionError):
        runner.main(["--minibench", str(mb), "--out", str(out), "--grid", str(grid), "--archive", "-",
                     "--report", "-", "--deadline", "1.0"])
    assert scored == [trained]
    with pytest.raises(SystemExit):
        runner.main(["--grid", str(grid), "--stop-after", "0"])


def test_cells_of_a_grid_started_in_the_background_still_take_sigint():
    """A shell's ``cmd &`` ignores SIGINT in cmd and in what it starts; the time limit needs the cells to take it."""
    import subprocess
    import sys

    child = "import signal; print(signal.getsignal(signal.SIGINT) is signal.default_int_handler)"
    script = ("import signal, subprocess, sys\n"
              "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
              f"sys.path.insert(0, {str(REPO_ROOT / 'bench')!r})\n"
              "import minibench_cells\n"
              f"before = subprocess.run([sys.executable, '-c', {child!r}], capture_output=True, text=True).stdout\n"
              "minibench_cells.let_cells_be_interrupted()\n"
              f"after = subprocess.run([sys.executable, '-c', {child!r}], capture_output=True, text=True).stdout\n"
              "print(before.strip(), after.strip())")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "True"]


def test_the_paired_table_gives_holm_adjusted_p_and_marks_verdicts_that_are_not_family_wise():
    """Six comparisons: one strong effect, and one resolved at 95 % alone (seed-t p 0.018) that Holm does not
    keep (second smallest of six: 5 x 0.018 = 0.091)."""
    from dpda.evaluation.paired import compare_eers

    import minibench_report

    seeds = [1, 2, 3, 4, 5]
    base = {s: 12.0 for s in seeds}
    diffs = {("strong", "eval"): [-2.0, -2.1, -1.9, -2.05, -1.95],
             ("weak", "eval"): [-1.67, -1.33, -0.83, -0.17, -1.83]}
    noise = [0.9, -1.1, 0.4, -0.6, 0.3]  # p ~ 0.99: no effect
    splits = {}
    for split in ("eval", "ood_dev"):
        methods = {}
        for name in ("strong", "weak", "none"):
            d = diffs.get((name, split), noise)
            c = compare_eers({s: 12.0 + x for s, x in zip(seeds, d)}, base, names=(name, "dual"), n_boot=500)
            methods[name] = {"pooled": c.as_dict(), "per_attack": {}}
        splits[split] = {"methods": methods, "attack_spoofs": {}, "n_bona": 0}
    lines = minibench_report.stats_markdown({"baseline": "dual", "splits": splits}, {}, None)
    table = "\n".join(lines)
    rows = {tuple(cell.strip() for cell in line.split("|")[1:3]): line for line in lines if line.startswith("| ")}
    assert "| <0.001 (<0.001) | **better** |" in rows[("strong", "eval")]
    assert "| 0.018 (0.091) | **better** (not family-wise) |" in rows[("weak", "eval")]
    assert "not resolved" in rows[("none", "ood_dev")] and "(1.000)" in rows[("none", "ood_dev")]
    assert "Holm's adjustment over the 6 comparisons of this table" in table and "about 26 % for 6" in table
    assert "adjusted 0.091: not resolved family-wise" in table and "adjusted <0.001: also resolved" in table


def test_epochs_trained_and_eer_within_methods():
    """The early-stopping paragraph: r within methods removes each method's means (a method that trains
    longer and scores better does not make it), the slope is EER points per epoch; no paragraph when
    every run trained the same number of epochs."""
    import minibench_stopping

    # within each method EER = offset - 0.5 * epochs exactly; across methods the offsets run the other way
    rows = [{"epochs_run": [10, 14, 20], "eval_eer": [15.0, 13.0, 10.0], "ood_dev_eer": [20.0, 20.0, 20.0]},
            {"epochs_run": [30, 32, 40], "eval_eer": [25.0, 24.0, 20.0], "ood_dev_eer": [18.0, 19.0, 17.0]}]
    assoc = minibench_stopping.stopping_and_eer(rows)
    assert assoc["runs"] == 6
    assert assoc["eval"]["r_within"] == pytest.approx(-1.0) and assoc["eval"]["slope"] == pytest.approx(-0.5)
    x = np.array([10, 14, 20, 30, 32, 40], dtype=float)
    assert assoc["eval"]["r"] == pytest.approx(np.corrcoef(x, [15, 13, 10, 25, 24, 20])[0, 1])
    assert assoc["eval"]["r"] > 0  # pooled, the method offsets reverse the sign
    # ood_dev: the first method's EER does not vary; the second's centred values are (-4, -2, 6) vs (0, 1, -1)
    xc = np.array([10 - 44 / 3, 14 - 44 / 3, 20 - 44 / 3, -4.0, -2.0, 6.0])
    yc = np.array([0.0, 0.0, 0.0, 0.0, 1.0, -1.0])
    assert assoc["ood_dev"]["slope"] == pytest.approx(xc @ yc / (xc @ xc))
    assert assoc["ood_dev"]["r_within"] == pytest.approx(np.corrcoef(xc, yc)[0, 1])
    text = minibench_stopping.stopping_sentence(assoc)
    assert "over the 6 runs" in text and "eval r +" in text and "within methods -1.00, -0.50 EER points" in text
    same = [{"epochs_run": [12, 12], "eval_eer": [10.0, 11.0], "ood_dev_eer": [15.0, 16.0]}]
    assert minibench_stopping.stopping_and_eer(same) is None


def test_best_epochs_paired_by_seed():
    """Epochs to the best dev loss against the baseline: paired on the common seeds only (order and
    missing seeds do not misalign), t interval and p over the per-seed differences, a verdict only when
    the interval excludes 0, and the paragraph under the training table of the report."""
    import minibench_report
    import minibench_stopping
    from dpda.evaluation.power import t_interval

    rows = [{"method": "dual", "label": "dual (no alignment)", "seeds": [1, 2, 3, 4], "best_epoch": [10, 12, 8, 9],
             "epochs_run": [15, 17, 13, 14], "eval_eer": [10.0, 11.0, 12.0, 13.0], "ood_dev_eer": [15.0] * 4},
            # seeds in another order and seed 4 missing: the pairs are (1: 6-10), (2: 9-12), (3: 5-8)
            {"method": "fast", "label": "fast", "seeds": [3, 1, 2], "best_epoch": [5, 6, 9],
             "epochs_run": [10, 11, 14], "eval_eer": [10.0, 11.0, 12.0], "ood_dev_eer": [15.0] * 3},
            {"method": "mixed", "label": "mixed", "seeds": [1, 2, 3, 4], "best_epoch": [12, 10, 8, 13],
             "epochs_run": [17, 15, 13, 18], "eval_eer": [10.0, 11.0, 12.0, 13.0], "ood_dev_eer": [15.0] * 4},
            {"method": "lonely", "label": "lonely", "seeds": [4, 9], "best_epoch": [3, 3],
             "epochs_run": [8, 8], "eval_eer": [10.0, 11.0], "ood_dev_eer": [15.0] * 2}]
    paired = {c["label"]: c for c in minibench_stopping.best_epochs_paired(rows, "dual")}
    assert set(paired) == {"fast", "mixed"}  # lonely shares one seed with dual
    fast, mixed = paired["fast"], paired["mixed"]
    assert fast["seeds"] == [1, 2, 3] and fast["diffs"] == [-4.0, -3.0, -3.0]
    assert fast["mean"] == pytest.approx(-10 / 3) and fast["ci"] == pytest.approx(t_interval([-4, -3, -3], 0.95))
    assert fast["ci"][1] < 0 and fast["p"] < 0.05 and (fast["earlier"], fast["same"], fast["later"]) == (3, 0, 0)
    # three seeds, all earlier: the sign test's smallest two-sided p is 2 / 8, so not resolved
    assert fast["sign_p"] == pytest.approx(0.25) and fast["verdict"] == "not resolved"
    assert mixed["diffs"] == [2.0, -2.0, 0.0, 4.0] and (mixed["earlier"], mixed["same"], mixed["later"]) == (1, 1, 2)
    assert mixed["sign_p"] == pytest.approx(1.0) and mixed["verdict"] == "not resolved"
    # eight seeds, all three epochs earlier: no spread, the sign test resolves it (p 2 / 256)
    eight = [{"method": "dual", "label": "dual", "seeds": list(range(8)), "best_epoch": [9] * 8},
             {"method": "alike", "label": "alike", "seeds": list(range(8)), "best_epoch": [6] * 8}]
    (alike,) = minibench_stopping.best_epochs_paired(eight, "dual")
    assert alike["ci"] == (-3.0, -3.0) and alike["sign_p"] == pytest.approx(2 / 256) and alike["verdict"] == "fewer"
    assert "alike -3.0 (-3.0 on every seed, no spread;" in minibench_stopping.best_epochs_sentence([alike], "dual")
    assert minibench_stopping.sign_test_p(0, 0) == 1.0
    assert minibench_stopping.sign_test_p(1, 4) == pytest.approx(2 * (1 + 5) / 32)
    text = minibench_stopping.best_epochs_sentence(list(paired.values()), "dual (no alignment)")
    assert "against dual (no alignment)" in text
    assert "fast -3.3 (t interval" in text
    assert "earlier on 3, same on 0, later on 0 of 3 seeds, sign test p 0.25; not resolved)" in text
    assert "mixed +1.0" in text and "later on 2 of 4 seeds, sign test p 1.00; not resolved)" in text
    assert minibench_stopping.best_epochs_paired(rows[1:], "dual") == []
    assert minibench_stopping.best_epochs_sentence([], "dual") == ""
    table = minibench_report.markdown({"baseline": "dual", "rows": [dict(r, **{
        "eval_mean": 1.0, "eval_std": 0.0, "ood_dev_mean": 1.0, "ood_dev_std": 0.0, "conflict_overall": 1.0,
        "conflict_first": 1.0, "conflict_last": 1.0, "s_per_epoch": 1.0, "clips_per_s": 1.0, "total_s": 1.0})
        for r in rows[:2]]}, None)
    assert "Epochs to the best dev loss against dual (no alignment), paired by seed" in table

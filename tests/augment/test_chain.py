"""Chains (Series, RandomChoice, p), config building / errors, RawBoost step and seeding."""

from __future__ import annotations

from pathlib import Path
from typing import Tuple

import numpy as np
import pytest
import soundfile as sf

from dpda.augment.chain import (
    Augmentation,
    ChainConfigError,
    Identity,
    Maybe,
    RandomChoice,
    RawBoostStep,
    Series,
    build_chain,
    load_chain,
)
from dpda.augment.seeding import seed_worker, utterance_rng, worker_generator, worker_rng, worker_seed

SR = 16000


class Add(Augmentation):
    """Adds a constant: makes it visible which steps ran."""

    def __init__(self, c: float) -> None:
        self.c = c

    def apply(self, x: np.ndarray, rng: np.random.Generator) -> Tuple[np.ndarray, list]:
        return (x + self.c).astype(np.float32), [{"step": "add", "c": self.c}]


class Scale(Augmentation):
    def __init__(self, g: float) -> None:
        self.g = g

    def apply(self, x: np.ndarray, rng: np.random.Generator) -> Tuple[np.ndarray, list]:
        return (x * self.g).astype(np.float32), [{"step": "scale"}]


def signal(n: int = 4000, seed: int = 0) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(n)).astype(np.float32)


def rawboost_or_skip():
    try:
        from dpda.augment.rawboost.reference import rawboost
    except ImportError as e:  # pragma: no cover - depends on the RawBoost module being present
        pytest.skip(f"dpda.augment.rawboost.reference not importable yet ({e}); RawBoost step not testable")
    return rawboost


# --------------------------------------------------------------------------- combinators


def test_series_applies_in_order() -> None:
    x = np.zeros(10, np.float32)
    y, trace = Series([Add(1.0), Scale(3.0), Identity()]).apply(x, np.random.default_rng(0))
    assert np.allclose(y, 3.0) and [t["step"] for t in trace] == ["add", "scale"]


@pytest.mark.parametrize("p", [0.0, 0.3, 1.0])
def test_step_probability(p: float) -> None:
    step = Maybe(Add(1.0), p)
    rng = np.random.default_rng(123)
    n = 4000
    hits = sum(step(np.zeros(1, np.float32), rng)[0] == 1.0 for _ in range(n))
    sd = np.sqrt(p * (1 - p) / n)
    assert abs(hits / n - p) <= 4 * sd + 1e-12


def test_random_choice_weights() -> None:
    choice = RandomChoice([Add(1.0), Add(2.0), Add(3.0)], weights=[1, 3, 0])
    rng = np.random.default_rng(7)
    n = 4000
    got = np.array([choice(np.zeros(1, np.float32), rng)[0] for _ in range(n)])
    assert not np.any(got == 3.0)
    frac = np.mean(got == 2.0)
    assert abs(frac - 0.75) < 4 * np.sqrt(0.75 * 0.25 / n)
    uniform = RandomChoice([Add(1.0), Add(2.0)])
    got = np.array([uniform(np.zeros(1, np.float32), rng)[0] for _ in range(n)])
    assert abs(np.mean(got == 1.0) - 0.5) < 4 * np.sqrt(0.25 / n)


def test_chain_p_from_config_statistics() -> None:
    chain = build_chain({"series": [{"bandlimit": {"low": 300, "high": 3400, "p": 0.25}}]})
    rng = np.random.default_rng(1)
    x = signal(256)
    n = 1200
    applied = sum(bool(chain.apply(x, rng)[1]) for _ in range(n))
    assert abs(applied / n - 0.25) < 4 * np.sqrt(0.25 * 0.75 / n)


def test_combinator_argument_errors() -> None:
    with pytest.raises(ValueError, match="probability"):
        Maybe(Identity(), 1.5)
    with pytest.raises(ValueError, match="weights has 1 entries for 2 steps"):
        RandomChoice([Identity(), Identity()], weights=[1])
    with pytest.raises(ValueError, match="not all 0"):
        RandomChoice([Identity()], weights=[0])
    with pytest.raises(TypeError, match="numpy.random.Generator"):
        Series([Identity()])(signal(), np.random.RandomState(0))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="changed the signal length"):
        Series([lambda x, rng: x[:-1]])(signal(), np.random.default_rng(0))


# --------------------------------------------------------------------------- config


def test_config_errors_name_the_key_path() -> None:
    cfg = {"series": [{"bandlimit": {"low": 300}}, {"choice": [{"noise": {"rooot": "/data/musan"}}]}]}
    with pytest.raises(ChainConfigError) as e:
        build_chain(cfg)
    assert str(e.value).startswith(
        "chain.series[1].choice[0].noise: unknown option 'rooot'; expected one of root, categories, files, snr"
    )
    cases = [
        ({"series": [{"reverbb": {}}]}, "chain.series[0]: unknown step 'reverbb'; expected one of series, choice"),
        ({"series": [{"bandlimit": {"low": 300, "p": 2}}]}, "chain.series[0].bandlimit: p must be a probability"),
        ({"choice": [{"identity": {}}, "identity"], "weights": [1]}, "chain: weights has 1 entries for 2 steps"),
        ({"choice": {"identity": {}}}, "chain.choice: expected a non-empty list of steps"),
        ({"series": [{"codec": {"bitrate": 32}}]}, "chain.series[0].codec: missing option 'name'"),
        ({"series": [{"codec": {"name": "wma"}}]}, "chain.series[0].codec: unknown codec 'wma'"),
        ({"series": [{"bandlimit": {"low": 3400, "high": 300}}]}, "chain.series[0].bandlimit: low"),
        ({"series": [{"noise": {"root": "/no/such/musan"}}]}, "chain.series[0].noise: /no/such/musan: noise folder not found"),
        ({"series": [{"identity": {}, "codec": {"name": "mp3"}}]}, "chain.series[0]: one step per item"),
        ({"series": [{"codec": {"name": "mp3"}, "prob": 0.5}]}, "chain.series[0]: unknown key 'prob' beside 'codec'"),
        ({"series": [{"rawboost": {"algo": 9}}]}, "chain.series[0].rawboost: RawBoost algo must be an int in 0..8"),
        ({"series": [{"rawboost": {"algo": 4, "SNRmax": 5, "snr": 3}}]}, "chain.series[0].rawboost: unknown option 'snr'"),
        ({"series": [3]}, "chain.series[0]: expected a step"),
    ]
    for cfg, start in cases:
        with pytest.raises(ChainConfigError) as e:
            build_chain(cfg)
        assert str(e.value).startswith(start), (str(e.value), start)


def _corpus(tmp: Path) -> None:
    rng = np.random.default_rng(0)
    for cat in ("noise", "music", "speech"):
        for i in range(2):
            d = tmp / "data" / "musan" / cat
            d.mkdir(parents=True, exist_ok=True)
            sf.write(str(d / f"{cat}{i}.wav"), (0.1 * rng.standard_normal(SR // 2)).astype(np.float32), SR)
    rir_dir = tmp / "data" / "RIRS_NOISES" / "real_rirs_isotropic_noises"
    rir_dir.mkdir(parents=True)
    h = np.zeros(2000, np.float32)
    h[50] = 1.0
    h[51:] = 0.1 * rng.standard_normal(1949) * np.exp(-np.arange(1949) / 300)
    sf.write(str(rir_dir / "rir1.wav"), h, SR)
    (rir_dir / "rir_list").write_text(
        "--rir-id r1 --room-id a RIRS_NOISES/real_rirs_isotropic_noises/rir1.wav\n"
    )


CONFIG = """\
series:
  - bandlimit: {low: [50, 300], high: [3400, 7000], p: 0.5}
  - choice:
      - noise: {root: data/musan, categories: {noise: [0, 15]}}
      - reverb: {root: data/RIRS_NOISES, list: RIRS_NOISES/real_rirs_isotropic_noises/rir_list}
      - codec: {name: mp3}
    p: 0.8
  - codec: {name: gsm}
    p: 0.2
"""


def test_load_chain_yaml_relative_paths_and_reproducibility(tmp_path: Path) -> None:
    _corpus(tmp_path)
    cfg = tmp_path / "aug.yaml"
    cfg.write_text(CONFIG)
    chain = load_chain(cfg)
    x = signal(SR // 2)
    steps_seen = set()
    for seed in range(25):
        y, trace = chain.apply(x, np.random.default_rng(seed))
        assert y.shape == x.shape and y.dtype == np.float32
        steps_seen.update(t["step"] for t in trace)
        y2 = chain(x, np.random.default_rng(seed))
        assert np.array_equal(y, y2)  # same seed -> same output
    assert steps_seen == {"bandlimit", "noise", "reverb", "codec"}
    # a list at the top level is a series; {chain: ...} is unwrapped
    assert isinstance(build_chain([{"identity": None}]), Series)
    assert isinstance(build_chain({"chain": {"choice": ["identity"]}}), RandomChoice)


def test_load_chain_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ChainConfigError, match="not found"):
        load_chain(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("series:\n  - codec: {name: mp3\n  - x\n")
    with pytest.raises(ChainConfigError, match=r"bad\.yaml:\d+: invalid YAML"):
        load_chain(bad)
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("series:\n  - codec: {nam: mp3}\n")
    with pytest.raises(ChainConfigError) as e:
        load_chain(wrong)
    assert str(e.value).startswith(f"{wrong}: chain.series[0].codec: unknown option 'nam'; expected one of name")


# --------------------------------------------------------------------------- RawBoost step


def test_rawboost_step_matches_reference_with_drawn_state() -> None:
    rawboost = rawboost_or_skip()
    from dpda.augment.rawboost.params import RawBoostParams

    x = signal(SR)
    step = RawBoostStep(4, {"SNRmin": 5})
    y, (info,) = step.apply(x, np.random.default_rng(11))
    seed = int(np.random.default_rng(11).integers(2**32))
    assert info["seed"] == seed
    ref = rawboost(x, SR, 4, np.random.RandomState(seed), params=RawBoostParams(SNRmin=5))
    assert y.dtype == np.float32 and y.shape == x.shape
    assert np.allclose(y, np.asarray(ref, dtype=np.float32))
    assert np.array_equal(step(x, np.random.default_rng(11)), y)
    assert not np.array_equal(step(x, np.random.default_rng(12)), y)
    chain = build_chain({"series": [{"rawboost": {"algo": 3, "SNRmin": 20, "SNRmax": 20, "p": 1.0}}]})
    assert not np.array_equal(chain(x, np.random.default_rng(0)), x)


def test_rawboost_step_import_failure_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):  # type: ignore[no-untyped-def]
        if name.startswith("dpda.augment.rawboost.reference"):
            raise ImportError("simulated")
        return real_import(name, *args, **kwargs)

    import importlib
    import sys

    monkeypatch.delitem(sys.modules, "dpda.augment.rawboost.reference", raising=False)
    monkeypatch.setattr(importlib, "import_module", lambda name, *a: fake_import(name))
    from dpda.errors import DpdaError

    with pytest.raises(DpdaError, match="RawBoost implementation dpda.augment.rawboost.reference.rawboost is not available"):
        RawBoostStep(4)(signal(), np.random.default_rng(0))


# --------------------------------------------------------------------------- seeding


def test_seeds_differ_by_worker_epoch_index_and_reproduce() -> None:
    seeds = {worker_seed(1234, e, w) for e in range(3) for w in range(4)}
    assert len(seeds) == 12
    assert worker_seed(1234, 2, 3) == worker_seed(1234, 2, 3)
    assert worker_seed(1234, 0, 0, index=5) != worker_seed(1234, 0, 0, index=6)
    assert 0 <= worker_seed(1, bits=32) < 2**32
    assert worker_rng(5, 1, 2).random() == worker_rng(5, 1, 2).random()
    with pytest.raises(ValueError):
        worker_seed(-1)


def test_utterance_streams_through_a_chain() -> None:
    chain = build_chain({"series": [{"bandlimit": {"low": [50, 500], "high": [2000, 7000]}}, {"codec": {"name": "opus"}}]})
    x = signal(SR // 4)
    out = {(e, i): chain(x, utterance_rng(99, e, i)) for e in range(2) for i in range(3)}
    assert np.array_equal(out[(1, 2)], chain(x, utterance_rng(99, 1, 2)))  # same seed -> same output
    keys = list(out)
    for a in range(len(keys)):
        for b in range(a + 1, len(keys)):
            assert not np.array_equal(out[keys[a]], out[keys[b]])  # other epoch / utterance -> different
    assert utterance_rng(99, 0, 0).random() != utterance_rng(99, 0, 0, stream=1).random()
    assert utterance_rng(99, 0, 0).random() != worker_rng(99, 0, 0).random()


def test_seed_worker_gives_distinct_reproducible_worker_streams() -> None:
    import random

    import torch

    def worker_draws(base: int, worker_id: int):
        torch.manual_seed(base + worker_id)  # what the DataLoader does in each worker
        seed_worker(worker_id)
        return np.random.random(), random.random(), worker_generator().random()

    state = torch.random.get_rng_state()
    np_state = np.random.get_state()
    py_state = random.getstate()
    try:
        a0, a1 = worker_draws(1000, 0), worker_draws(1000, 1)
        assert all(u != v for u, v in zip(a0, a1))
        assert worker_draws(1000, 0) == a0
        assert worker_draws(2000, 0) != a0  # next epoch: new base seed
    finally:
        torch.random.set_rng_state(state)
        np.random.set_state(np_state)
        random.setstate(py_state)
        import dpda.augment.seeding as seeding_mod

        seeding_mod._worker_rng = None


class _Draws:
    """Map-style dataset returning (index, worker-generator draw, NumPy-global draw)."""

    def __len__(self) -> int:
        return 6

    def __getitem__(self, i: int):  # type: ignore[no-untyped-def]
        return np.array([i, worker_generator().random(), np.random.random()])


def test_dataloader_workers_draw_different_streams() -> None:
    import torch
    from torch.utils.data import DataLoader

    def epoch(seed: int) -> np.ndarray:
        dl = DataLoader(
            _Draws(),  # type: ignore[arg-type]
            batch_size=1,
            num_workers=2,
            worker_init_fn=seed_worker,
            generator=torch.Generator().manual_seed(seed),
        )
        return torch.cat(list(dl)).numpy()

    a = epoch(0)
    # items 0 and 1 are the first items of worker 0 and worker 1
    assert a[0, 1] != a[1, 1] and a[0, 2] != a[1, 2]
    assert np.array_equal(a, epoch(0))  # same seed -> same streams
    assert not np.array_equal(a[:, 1:], epoch(1)[:, 1:])  # new base seed (next epoch) -> new streams


def test_rawboost_step_batched_path() -> None:
    try:
        import dpda.augment.rawboost.batched  # noqa: F401
    except ImportError as e:  # pragma: no cover
        pytest.skip(f"dpda.augment.rawboost.batched not importable yet ({e}); batched RawBoost not testable")
    import torch

    step = RawBoostStep(5)
    x = torch.from_numpy(np.stack([signal(SR, seed=s) for s in range(3)]))
    a = step.apply_batch(x, torch.Generator().manual_seed(0))
    b = step.apply_batch(x, torch.Generator().manual_seed(0))
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, x)

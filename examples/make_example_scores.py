"""Regenerate the example key and score file used by the README's first command.

The key is a small file in the ASVspoof 2021 LA key layout
(``SPEAKER UTT CODEC TRANSMISSION ATTACK LABEL TRIM SUBSET``); the scores are
synthetic (Gaussian, attack- and codec-dependent difficulty), made so that the
per-attack and per-codec breakdown has something to show. They are not the
output of a model. Run: ``python examples/make_example_scores.py``.
"""

from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
CODECS = {"none": 0.0, "alaw": 0.3, "pstn": 0.6, "g722": 0.4, "ulaw": 0.3, "gsm": 0.9, "opus": 0.5}
TRANSMISSION = {"none": "-", "alaw": "ita_tx", "pstn": "sin_tx", "g722": "loc_tx", "ulaw": "mad_tx", "gsm": "loc_tx", "opus": "loc_tx"}
ATTACKS = {"A07": 0.5, "A08": 0.2, "A09": 0.1, "A10": 1.5, "A11": 0.8, "A12": 1.2, "A13": 1.0}


def main() -> None:
    rng = np.random.default_rng(2021)
    key_lines, score_lines = [], []
    n = 0
    for codec, c_shift in CODECS.items():
        for i in range(100):
            spoof = i >= 25  # 25 bona fide and 75 spoof trials per codec
            attack = list(ATTACKS)[i % len(ATTACKS)] if spoof else "-"
            spk = f"LA_{rng.integers(1, 60):04d}"
            utt = f"LA_E_{1000000 + n:07d}"
            subset = "eval" if n % 4 else "progress"
            label = "spoof" if spoof else "bonafide"
            key_lines.append(f"{spk} {utt} {codec} {TRANSMISSION[codec]} {attack} {label} notrim {subset}")
            mean = (-2.0 + ATTACKS[attack] + c_shift) if spoof else (2.0 - c_shift)
            score_lines.append(f"{utt} {rng.normal(mean, 1.0):.5f}")
            n += 1
    order = rng.permutation(len(score_lines))  # score files need not follow the key's order
    (HERE / "asvspoof2021_la_key.txt").write_text("\n".join(key_lines) + "\n")
    (HERE / "example_scores.txt").write_text("\n".join(score_lines[k] for k in order) + "\n")


if __name__ == "__main__":
    main()

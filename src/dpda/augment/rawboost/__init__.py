"""RawBoost (Tak et al., ICASSP 2022): reference-exact NumPy path and batched torch path.

* :func:`rawboost` / :class:`RawBoost` (``reference.py``): exact with the
  original given ``rng = np.random.RandomState(seed)``: the same draws and RNG
  position, the same values up to NumPy's per-build last bits (see there).
* ``rawboost_batched`` / ``BatchedRawBoost`` (``batched.py``): the same
  algorithms on a ``(B, T)`` tensor on CPU or GPU, each utterance with its own
  random parameters (matches the original in distribution).
"""

from dpda.augment.rawboost.batched import BatchedRawBoost, rawboost_batched
from dpda.augment.rawboost.params import ALGORITHMS, RawBoostParams, from_mapping
from dpda.augment.rawboost.reference import RawBoost, rawboost

__all__ = ["ALGORITHMS", "RawBoostParams", "from_mapping", "RawBoost", "rawboost", "BatchedRawBoost", "rawboost_batched"]

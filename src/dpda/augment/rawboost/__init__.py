"""RawBoost (Tak et al., ICASSP 2022): reference-exact NumPy path and batched torch path.

* :func:`rawboost` / :class:`RawBoost` (``reference.py``): bit-exact with the
  original given ``rng = np.random.RandomState(seed)``.
* ``rawboost_batched`` / ``BatchedRawBoost`` (``batched.py``): the same
  algorithms on a ``(B, T)`` tensor on CPU or GPU, each utterance with its own
  random parameters (matches the original in distribution).
"""

from dpda.augment.rawboost.batched import BatchedRawBoost, rawboost_batched
from dpda.augment.rawboost.params import ALGORITHMS, RawBoostParams, from_mapping
from dpda.augment.rawboost.reference import RawBoost, rawboost

__all__ = ["ALGORITHMS", "RawBoostParams", "from_mapping", "RawBoost", "rawboost", "BatchedRawBoost", "rawboost_batched"]

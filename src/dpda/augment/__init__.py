"""Data augmentation: RawBoost (reference-exact NumPy and batched torch), noise, reverberation, codecs, chains."""

"""Argument checks shared by the library (a low module: imports nothing of tfladder).

Each names the argument and what was expected, and raises `ValueError`.
"""
import numpy as np

MAX_SEED = 2**31 - 1


def check_seed(name, value):
    """An integer seed in [0, 2**31): stateless seeds are int32, so larger values
    would wrap onto smaller ones (2**32 would equal 0)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) \
            or not 0 <= value <= MAX_SEED:
        raise ValueError(f"{name} must be an integer in [0, 2**31), got {value!r}.")
    return int(value)


def check_positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    return int(value)


def check_non_negative_int(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}.")
    return int(value)

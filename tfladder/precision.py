"""Keras dtype policies tfladder trains and evaluates under (imports nothing of tfladder).

| name | computes in | for |
| --- | --- | --- |
| `float32` | float32 | every machine (the default) |
| `mixed_bfloat16` | bfloat16, float32 variables | CPUs with AVX-512 BF16 / AMX, TPUs |
| `mixed_float16` | float16, float32 variables, loss scaling | GPUs |

Under every policy the stochastic layers, the KL terms, the likelihood, the
ELBO and L_K stay float32 (the families' layers pin them).
"""
import keras

PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")


def check_precision(name):
    """Returns `name` if it is one of `PRECISIONS`, else raises ValueError."""
    if name not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {name!r}.")
    return name


class dtype_policy:
    """Sets Keras' global dtype policy for the duration of a `with` block.

    Models built inside the block compute under the policy; the previous
    policy is restored on exit, also when the block raises.
    """

    def __init__(self, name):
        self.name = check_precision(name)

    def __enter__(self):
        self.previous = keras.config.dtype_policy()
        keras.config.set_dtype_policy(self.name)
        return self

    def __exit__(self, *exc):
        keras.config.set_dtype_policy(self.previous)
        return False

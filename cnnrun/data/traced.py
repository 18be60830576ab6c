"""`as_written(fn)`: a function for `tf.data` traced as its Python is written, without AutoGraph's rewrite.

`Dataset.map` and `flat_map` hand every function to AutoGraph, which reads its source and rewrites each `if` and
`for` on a tensor into graph ops before tracing it. cnnrun's pipeline functions branch only on Python values (a
config's switch, an augmenter or none) and write `tf.cond` where a tensor decides, so the rewrite would change
nothing in the graph; it only costs time at every run's start (py-spy over the test suite, 2026-12-04: AutoGraph's
parsing and rewriting were 2 % of all its CPU time).
A pipeline function that needs a Python `if` on a tensor must write `tf.cond` instead: tracing it fails loudly.
"""

from collections.abc import Callable
from typing import Any


def as_written(fn: Callable[..., Any]) -> Callable[..., Any]:
    """`fn` marked for `tf.data` to trace as written (`tf.autograph.experimental.do_not_convert`).

    Args:
        fn: a function of tensors that branches on tensors only through `tf.cond` (or Keras' `ops.cond`).
    """
    import tensorflow as tf

    return tf.autograph.experimental.do_not_convert(fn)

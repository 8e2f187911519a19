"""Keras models at inference as one traced graph.

Calling a Keras model eagerly runs each layer's ops one by one from Python: slower, and in TF 2.14 every eager op
call leaves about 48 bytes of Python memory behind (measured with tracemalloc: ~90 KB per FaceNet call, ~9 KB per
reconstruction), which a long-running encoder or decoder accumulates. The traced graph gives bit-identical outputs
(up to the last bit on some CPUs; tests/test_inference.py) and leaves nothing behind.

Batch invariance: TensorFlow's CPU kernels pick their algorithm by the size of the batch. A batch of one row takes
other kernels than every larger batch (oneDNN's minibatch-1 transposed convolution in the reconstructor, Eigen's
matrix-vector product in the dense layers of FaceNet and the linear predictor), and on an AMX Xeon every odd batch
takes other transposed-convolution kernels than the even ones; their sums round differently in the last bit:
enough to move a reconstructed pixel by one level or, rarely, a quantized feature by one step. Even batches of 2 to
64 rows (the chunk size of every caller) give each row bit-identical results. So no network here runs on an odd
number of rows: ``batch_invariant`` repeats the last row of an odd batch once, in process and in the SavedModel
exports alike, and a face decodes to the same bytes alone and in any batch (tests/test_conformance.py).
"""

from __future__ import annotations

import functools
from typing import Callable, Sequence

import tensorflow as tf


def batch_invariant(call: Callable[[tf.Tensor], tf.Tensor], x: tf.Tensor) -> tf.Tensor:
    """``call(x)`` for a batch ``x``, an odd batch run with its last row repeated (the copy dropped), so that every
    row is computed by the kernels of even batches (module docstring). Works traced or eager."""
    x = tf.convert_to_tensor(x)
    rows = tf.shape(x)[0]
    return call(tf.cond(tf.equal(rows % 2, 1), lambda: tf.concat([x, x[-1:]], 0), lambda: x))[:rows]


def graph(model: tf.keras.Model, input_shape: Sequence[int], dtype: tf.dtypes.DType = tf.float32) -> Callable:
    """``model(x, training=False)`` as a tf.function over batches of ``input_shape``, traced once (no autograph:
    the Keras call has no Python control flow that depends on tensors), batch-invariant (``batch_invariant``)."""
    return tf.function(
        lambda x: batch_invariant(lambda batch: model(batch, training=False), x),
        autograph=False,
        input_signature=[tf.TensorSpec((None, *input_shape), dtype)],
    )


class GraphInference:
    """Mixin for Keras models of (N, feature_dim) features: ``infer``, the model at inference as one graph."""

    @functools.cached_property
    def infer(self) -> Callable:
        return graph(self, (self.feature_dim,))

"""The building block of the Balle-2016 transforms (``learned.py``, ``face_codec.py``): tfc's ``SignalConv2D``
with zero padding, a correlation when it downsamples (analysis) and a convolution when it upsamples (synthesis)."""

from __future__ import annotations

import tensorflow_compression as tfc


def signal_conv(filters: int, kernel: int, down: int = 1, up: int = 1, activation=None, bias: bool = True, name=None):
    """A ``kernel`` x ``kernel`` layer of ``filters`` channels, strided down by ``down`` or up by ``up``."""
    return tfc.SignalConv2D(
        filters,
        (kernel, kernel),
        name=name,
        corr=down > 1 or up == 1,
        strides_down=down,
        strides_up=up,
        padding="same_zeros",
        use_bias=bias,
        activation=activation,
    )

"""sfc_tf: scalable facial image compression with deep feature reconstruction (Wang et al., ICIP 2019).

Submodules are imported on demand so that light users (bitstream parsing, base-layer decoding) do not
pay TensorFlow's start-up cost for models they never run.
"""

__version__ = "0.1.0"

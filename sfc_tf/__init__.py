"""sfc_tf: scalable facial image compression with deep feature reconstruction (Wang et al., ICIP 2019).

Submodules are imported on demand: parsing a file (``sfc_tf.bitstream``) needs neither TensorFlow nor a model;
base-layer decoding loads TensorFlow for its range coder but no network; the networks load on first use.
Version 0.2 writes bitstream version 4 and reads 3 and 4 (docs/bitstream.md); 0.1 wrote versions 1 and 2.
"""

__version__ = "0.2.0"

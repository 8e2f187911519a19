"""Loading a reconstructor (shipped directory or training checkpoint) and running it on decoded features in
batches, exactly as the decoder does (uint8 output). Residuals themselves are formed in ``enhancement.layer``."""

from __future__ import annotations

import os
import pathlib

import numpy as np

from sfc_tf.base.inference import GraphInference
from sfc_tf.errors import WeightsError
from sfc_tf.reconstruction import reconstructor as reconstructor_module


def load_reconstructor(path: str | os.PathLike) -> reconstructor_module.Reconstructor:
    """A shipped reconstructor directory (weights.h5 + meta.json), or, for work in progress, the prefix of a
    training state (``<checkpoint_dir>/train_state/ckpt-N``, ``sfc_tf.training.resume``) of the default architecture."""
    path = pathlib.Path(path)
    if path.is_dir():
        return reconstructor_module.load(path)
    if not pathlib.Path(f"{path}.index").is_file():
        raise WeightsError(f"{path} is neither a reconstructor directory nor a TF checkpoint prefix")
    import tensorflow as tf

    model = reconstructor_module.Reconstructor().build_for_inference()
    tf.train.Checkpoint(model=model).read(str(path)).expect_partial().assert_existing_objects_matched()
    model.model_id = f"training-checkpoint:{path}"
    return model


def reconstruct(
    model: GraphInference, features: np.ndarray, batch_size: int = 64, progress: bool = False
) -> np.ndarray:
    """Decoded features (N, D) -> uint8 faces, in batches, through the model's inference graph; ``model`` (a
    reconstructor or coding predictor) maps features to images in [-1, 1]."""
    from tqdm import tqdm

    features = np.asarray(features, np.float32)
    starts = tqdm(range(0, len(features), batch_size), desc="reconstruct", disable=not progress, leave=False)
    out = [reconstructor_module.to_uint8(model.infer(features[i : i + batch_size])) for i in starts]
    return np.concatenate(out) if out else np.zeros((0, 160, 160, 3), np.uint8)

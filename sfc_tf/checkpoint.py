"""Saving and loading model folders with a checksum: weight files + ``meta.json`` holding their sha256.

Every shipped model is such a folder (reconstructor, coding predictor, learned enhancement codecs). ``write_meta``
is called after the weights are written; ``read_meta`` refuses a folder whose weights do not match.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib

from sfc_tf.errors import WeightsError

META_FILE = "meta.json"


def sha256_file(path: str | os.PathLike) -> str:
    """The sha256 of one file, read in 1 MB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def files_sha256(directory: str | os.PathLike, names: tuple[str, ...]) -> str:
    digest = hashlib.sha256()
    for name in names:
        digest.update((pathlib.Path(directory) / name).read_bytes())
    return digest.hexdigest()


def write_meta(directory: str | os.PathLike, names: tuple[str, ...], meta: dict) -> dict:
    """``meta`` + the list and the sha256 of the files ``names``, written to ``directory/meta.json`` atomically."""
    directory = pathlib.Path(directory)
    record = {
        **{k: v for k, v in meta.items() if k not in ("sha256", "files")},
        "files": list(names),
        "sha256": files_sha256(directory, names),
    }
    tmp = directory / (META_FILE + ".tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, directory / META_FILE)
    return record


def read_meta(directory: str | os.PathLike, names: tuple[str, ...], what: str) -> dict:
    """The meta.json of a model folder whose files match its sha256 (``WeightsError`` otherwise): the files its
    meta.json lists (``names`` for folders written before the list existed)."""
    directory = pathlib.Path(directory)
    if not (directory / META_FILE).is_file():
        raise WeightsError(f"no {what} checkpoint in {directory} ({META_FILE} missing)")
    meta = json.loads((directory / META_FILE).read_text())
    names = tuple(meta.get("files", names))
    missing = [n for n in names if not (directory / n).is_file()]
    if missing:
        raise WeightsError(f"no {what} checkpoint in {directory} ({', '.join(missing)} missing)")
    if files_sha256(directory, names) != meta.get("sha256"):
        raise WeightsError(f"{directory}: the weights do not match the sha256 in {META_FILE}")
    return meta

"""Range-coding tables of the learned codecs: built once from the trained priors, stored beside the weights.

tfc builds an entropy model's tables (CDFs, CDF offsets, quantization offsets) from its prior by estimating each
channel's tails numerically: 5-10 s per prior on a 2-core CPU, several times that for a variable-rate model. A
decoder that meets a file naming a model it has not loaded yet would pay that inside the decode call. So ``save``
writes the tables to ``tables.npz`` (sha256 in meta.json) and loading builds the coding models from them; they are
then also identical on every platform by construction (the encoder's own tables), where recomputing them could
differ in the last bit and break range decoding. Checkpoints without the file still load, computing the tables.
"""

from __future__ import annotations

import hashlib
import io
import os
import pathlib

import numpy as np
import tensorflow_compression as tfc

from sfc_tf.errors import WeightsError

TABLES_FILE = "tables.npz"
CODING_RANK = 3
MAX_TABLES_BYTES = 64 << 20  # a model's tables are ~100 KB per prior; anything far larger is not ours


def coding_models(priors, tables: dict | None = None) -> list:
    """One range-coding entropy model per prior: from stored ``tables`` (``read``) or computed from the priors."""
    if tables is None:
        return [tfc.ContinuousBatchedEntropyModel(p, coding_rank=CODING_RANK, compression=True) for p in priors]
    if any(f"cdf_{i}" not in tables for i in range(len(priors))) or f"cdf_{len(priors)}" in tables:
        raise WeightsError(f"the stored range-coding tables do not fit a model with {len(priors)} priors")
    return [
        tfc.ContinuousBatchedEntropyModel(
            prior_shape=p.batch_shape,
            coding_rank=CODING_RANK,
            compression=True,
            cdf=tables[f"cdf_{i}"],
            cdf_offset=tables[f"cdf_offset_{i}"],
            quantization_offset=tables.get(f"quantization_offset_{i}"),
        )
        for i, p in enumerate(priors)
    ]


def rate_model(prior, coding_model):
    """An entropy model estimating the bits ``coding_model`` spends (same prior, same quantization offsets)."""
    offset = coding_model.quantization_offset
    return tfc.ContinuousBatchedEntropyModel(
        prior, coding_rank=CODING_RANK, compression=False, offset_heuristic=False, quantization_offset=offset
    )


def write(directory: str | os.PathLike, models: list) -> str:
    """The tables of ``models`` to ``directory/tables.npz`` (atomically); returns the file's sha256."""
    arrays = {}
    for i, model in enumerate(models):
        arrays[f"cdf_{i}"], arrays[f"cdf_offset_{i}"] = np.asarray(model.cdf), np.asarray(model.cdf_offset)
        if model.quantization_offset is not None:
            arrays[f"quantization_offset_{i}"] = np.asarray(model.quantization_offset)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    data = buffer.getvalue()
    path = pathlib.Path(directory) / TABLES_FILE
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return hashlib.sha256(data).hexdigest()


def read(directory: str | os.PathLike, meta: dict) -> dict | None:
    """The stored tables of a checkpoint, checked against ``meta["tables_sha256"]``; None if it stores none."""
    if "tables_sha256" not in meta:
        return None
    path = pathlib.Path(directory) / TABLES_FILE
    if not path.is_file() or path.stat().st_size > MAX_TABLES_BYTES:
        raise WeightsError(f"{directory}: {TABLES_FILE} is missing or too large")
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != meta["tables_sha256"]:
        raise WeightsError(f"{directory}: {TABLES_FILE} does not match the sha256 in its meta.json")
    with np.load(io.BytesIO(data), allow_pickle=False) as stored:
        return {name: stored[name] for name in stored.files}

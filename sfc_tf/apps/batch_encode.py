"""Coding many image files at once: decoding and alignment run on a pool of threads ahead of the batches that
FaceNet, the base layer and the enhancement layer code, so the stages overlap and both cores stay busy.

A file's bytes are those ``ScalableCodec.encode`` gives it alone: the aligner sees one image at a time, and every
network gives each row of a batch of up to ``MAX_BATCH`` the same result (``sfc_tf.base.inference``; tested in
tests/test_batch_encode.py). A file that cannot be read, aligned or coded fails alone.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np

from sfc_tf.apps.prefetch import prefetched_map
from sfc_tf.errors import ImageError, SfcError

if TYPE_CHECKING:
    from sfc_tf.base.align import ImageSource
    from sfc_tf.codec import Quality, ScalableCodec

MAX_BATCH = 64  # rows per network call that are computed as they would be alone (sfc_tf.base.inference)
DEFAULT_BATCH = 32


@dataclasses.dataclass
class Outcome:
    """One source's .sfc bytes, or the error that stopped it (its message without the source's name)."""

    source: ImageSource
    data: bytes | None = None
    error: SfcError | None = None


def default_workers() -> int:
    """Alignment threads: one per core, and at least two so that one waits on TensorFlow while the other runs."""
    return max(2, os.cpu_count() or 1)


def encode_files(
    codec: ScalableCodec,
    sources: Sequence[ImageSource],
    enhancement: str = "none",
    quality: Quality | None = None,
    mode: str = "auto",
    batch_size: int = DEFAULT_BATCH,
    workers: int | None = None,
) -> Iterator[Outcome]:
    """One ``Outcome`` per source, in order; each batch is yielded as soon as it is coded, while the next batch's
    images are aligned. Stopping early (breaking out, closing the iterator) stops the alignment threads."""
    if not 1 <= batch_size <= MAX_BATCH:
        raise ValueError(f"batch_size must be 1..{MAX_BATCH}, not {batch_size}")
    crops = prefetched_map(_crop(codec), sources, workers or default_workers(), ahead=2 * batch_size)
    try:
        group: list[Outcome] = []
        aligned: list[np.ndarray] = []
        for source, future in zip(sources, crops):
            try:
                aligned.append(future.result())
                group.append(Outcome(source))
            except SfcError as exc:
                group.append(Outcome(source, error=exc))
            if len(aligned) == batch_size:
                yield from _coded(codec, group, aligned, enhancement, quality, mode)
                group, aligned = [], []
        yield from _coded(codec, group, aligned, enhancement, quality, mode)
    finally:
        crops.close()


def _crop(codec: ScalableCodec):
    """``codec.crop`` with the errors of a bad image (ValueError for a wrong-sized ``align='crop'`` image) as
    ``SfcError``; the aligner is built here, not by the first alignment thread."""
    aligner = codec.aligner

    def crop(source: ImageSource) -> np.ndarray:
        try:
            return aligner(source)
        except ValueError as exc:
            raise ImageError(str(exc)) from exc

    return crop


def _coded(
    codec: ScalableCodec,
    group: list[Outcome],
    crops: list[np.ndarray],
    enhancement: str,
    quality: Quality | None,
    mode: str,
) -> list[Outcome]:
    """``group`` with the files of its aligned members (those without an error, in order) coded as one batch; if
    the batch fails, each face is coded alone so that only the faces that fail alone carry the error."""
    if not crops:
        return group
    good = [outcome for outcome in group if outcome.error is None]
    try:
        files = codec.encode_crops(np.stack(crops), enhancement, quality, mode)
    except SfcError:
        files = []
        for outcome, crop in zip(good, crops):
            try:
                files.append(codec.encode_crops(crop[None], enhancement, quality, mode)[0])
            except SfcError as exc:
                files.append(None)
                outcome.error = exc
    for outcome, data in zip(good, files):
        outcome.data = data
    return group

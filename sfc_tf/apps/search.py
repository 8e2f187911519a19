"""1:N face search on base layers: a gallery index of decoded base-layer features (no image is decoded), searched
exactly (numpy) or approximately with FAISS (HNSW graph) for large galleries.

Distances are squared L2 between mean-centred unit features, the quantity ``sfc compare`` thresholds, so a result
below the registry's verification threshold reads as "same person". Index file (``.npz``, no pickles): format
version, model-set id, centring mean, features (N, D) float32, labels and source names.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import numpy as np

from sfc_tf import metrics
from sfc_tf.errors import SfcError

if TYPE_CHECKING:
    import faiss

    from sfc_tf.codec import ScalableCodec

FORMAT_VERSION = 1
EXACT_LIMIT = 50_000  # "auto" searches galleries up to this size exactly, larger ones with FAISS HNSW
MAX_ENTRIES = 20_000_000
MAX_DIM = 4096
METHODS = ("auto", "exact", "faiss")
HNSW_NEIGHBOURS, HNSW_EF_CONSTRUCTION, HNSW_EF_SEARCH = 32, 80, 128
EXACT_BLOCK_ENTRIES = 1 << 24  # query x gallery distances per matrix product (64 MB: bounds exact search's memory)


class SearchIndexError(SfcError):
    """A search index file that is not one, or that does not fit the query."""


def check_one_model_set(model_sets: list[int]) -> int:
    """The one model set of a gallery's entries (``SearchIndexError`` if they mix several)."""
    sets = sorted(set(model_sets))
    if len(sets) > 1:
        raise SearchIndexError(f"the gallery mixes model sets {sets}; index each model set separately")
    return sets[0]


@dataclasses.dataclass
class Matches:
    """Top-k results per query: gallery rows, squared L2 distances, labels and sources (k columns each)."""

    rows: np.ndarray
    distances: np.ndarray
    labels: list[list[str]]
    sources: list[list[str]]


class SearchIndex:
    """Mean-centred base-layer features of a gallery with a label (identity) and a source name per entry."""

    def __init__(
        self, features: np.ndarray, labels: list[str], sources: list[str], model_set: int, mean: np.ndarray | None
    ) -> None:
        features = np.ascontiguousarray(features, np.float32)
        if features.ndim != 2 or not 0 < len(features) <= MAX_ENTRIES or not 0 < features.shape[1] <= MAX_DIM:
            raise SearchIndexError(f"gallery features must be (1..{MAX_ENTRIES}, 1..{MAX_DIM}), not {features.shape}")
        if not len(labels) == len(sources) == len(features):
            raise SearchIndexError(f"{len(features)} features but {len(labels)} labels and {len(sources)} sources")
        if mean is not None and np.shape(mean) != (features.shape[1],):
            raise SearchIndexError(f"centring mean of shape {np.shape(mean)} for {features.shape[1]}-d features")
        self.features, self.labels, self.sources = features, list(labels), list(sources)
        self.model_set, self.mean = int(model_set), None if mean is None else np.asarray(mean, np.float32)
        self._faiss = self._squared_norms = None

    def __len__(self) -> int:
        return len(self.features)

    @property
    def dim(self) -> int:
        return self.features.shape[1]

    @classmethod
    def from_files(
        cls,
        codec: ScalableCodec,
        files: list[bytes],
        labels: list[str],
        sources: list[str],
        batch: int = 1024,
        progress: Callable[[range], Iterable[int]] | None = None,
    ) -> "SearchIndex":
        """An index of ``.sfc`` files of one model set: their base layers only are decoded (batched). A file that
        cannot be decoded fails the index, named by its source."""
        from sfc_tf import bitstream
        from sfc_tf.errors import located

        if not files:
            raise SearchIndexError("an empty gallery")
        model_sets = []
        for data, source in zip(files, sources):
            try:
                model_sets.append(bitstream.unpack_base(data, codec.key).model_set)
            except SfcError as exc:
                raise located(exc, source) from exc
        check_one_model_set(model_sets)
        chunks = range(0, len(files), batch)
        features = [
            np.stack([d.feature for d in codec.decode_many(files[i : i + batch], "base", sources[i : i + batch])])
            for i in (progress(chunks) if progress else chunks)
        ]
        return cls.from_features(codec, np.concatenate(features), labels, sources, model_sets)

    @classmethod
    def from_features(
        cls, codec: ScalableCodec, features: np.ndarray, labels: list[str], sources: list[str], model_sets: list[int]
    ) -> "SearchIndex":
        """An index of decoded base-layer features (``model_sets``: each entry's), centred on its model set's mean."""
        model_set = check_one_model_set(model_sets)
        mean = codec.models_for(model_set).base_layer.mean
        return cls(metrics.centered(features, mean), labels, sources, model_set, mean)

    def centre(self, features: np.ndarray) -> np.ndarray:
        """Query features (uncentred, as decoded) in the index's space."""
        features = np.atleast_2d(np.asarray(features, np.float32))
        if features.shape[1] != self.dim:
            raise SearchIndexError(f"{features.shape[1]}-d queries for a {self.dim}-d index")
        return np.ascontiguousarray(metrics.centered(features, self.mean), np.float32)

    def search(self, queries: np.ndarray, k: int = 5, method: str = "auto") -> Matches:
        """The ``k`` nearest gallery entries of each (centred) query, nearest first."""
        if method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, not {method!r}")
        queries = np.atleast_2d(np.asarray(queries, np.float32))
        if queries.shape[1] != self.dim:
            raise SearchIndexError(f"{queries.shape[1]}-d queries for a {self.dim}-d index")
        k = max(1, min(int(k), len(self)))
        if method == "faiss" or (method == "auto" and len(self) > EXACT_LIMIT):
            distances, rows = self._hnsw().search(np.ascontiguousarray(queries), k)
        else:
            distances, rows = self._exact(queries, k)
        return Matches(
            rows,
            distances,
            [[self.labels[r] for r in row] for row in rows],
            [[self.sources[r] for r in row] for row in rows],
        )

    def _exact(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if self._squared_norms is None:
            self._squared_norms = np.einsum("ij,ij->i", self.features, self.features)
        squared_norms = self._squared_norms
        all_rows, all_distances = [], []
        step = max(1, EXACT_BLOCK_ENTRIES // len(self))
        for start in range(0, len(queries), step):
            block = queries[start : start + step]
            distances = squared_norms[None] - 2 * block @ self.features.T + np.einsum("ij,ij->i", block, block)[:, None]
            rows = (
                np.argpartition(distances, k - 1, axis=1)[:, :k]
                if k < len(self)
                else np.tile(np.arange(len(self)), (len(block), 1))
            )
            chosen = np.take_along_axis(distances, rows, 1)
            order = np.argsort(chosen, axis=1, kind="stable")
            all_rows.append(np.take_along_axis(rows, order, 1))
            all_distances.append(np.maximum(np.take_along_axis(chosen, order, 1), 0))
        return np.concatenate(all_distances).astype(np.float32), np.concatenate(all_rows)

    def _hnsw(self) -> faiss.IndexHNSWFlat:
        if self._faiss is None:
            import faiss

            graph = faiss.IndexHNSWFlat(self.dim, HNSW_NEIGHBOURS)
            graph.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
            graph.add(self.features)
            graph.hnsw.efSearch = HNSW_EF_SEARCH
            self._faiss = graph
        return self._faiss

    # -- files ----------------------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> None:
        """The index as an ``.npz`` file, written whole or not at all."""
        from sfc_tf import files

        with files.atomic_output(path) as out:
            np.savez(
                out,
                format_version=np.int32(FORMAT_VERSION),
                model_set=np.int32(self.model_set),
                mean=np.zeros(0, np.float32) if self.mean is None else self.mean,
                features=self.features,
                labels=np.array(self.labels, dtype=str),
                sources=np.array(self.sources, dtype=str),
            )

    @classmethod
    def load(cls, path: str | os.PathLike) -> "SearchIndex":
        try:
            with np.load(path, allow_pickle=False) as stored:
                version = int(stored["format_version"])
                if version != FORMAT_VERSION:
                    raise SearchIndexError(
                        f"{path}: search index format {version}; this version reads " f"{FORMAT_VERSION}"
                    )
                mean = stored["mean"]
                return cls(
                    stored["features"],
                    stored["labels"].tolist(),
                    stored["sources"].tolist(),
                    int(stored["model_set"]),
                    mean if mean.size else None,
                )
        except (OSError, ValueError, KeyError) as exc:
            raise SearchIndexError(f"{path} is not a search index ({exc})".splitlines()[0]) from None

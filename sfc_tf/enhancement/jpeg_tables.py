"""The Huffman tables of the headerless JPEG codec, fixed per quality 1..100 and shipped with the package.

Each quality's four tables (``jpeg_scan.TABLES``) are the optimal tables (Annex K.2) of the symbols libjpeg's
coefficients produce at that quality on training faces and on their min-max normalised residuals against the
mean training face (``train/fit_jpeg_tables.py``), every possible symbol counted once more so that any image can
be coded. ``jpeg_tables.json`` stores, per quality and table, the code length of each symbol of ``DC_SYMBOLS`` /
``AC_SYMBOLS`` as one hex digit (length - 1); a table is rebuilt as the canonical code of those lengths, symbols of
one length in increasing order. These tables are part of the format: changing them changes what every headerless
JPEG payload means.
"""

from __future__ import annotations

import functools
import json
import pathlib

import numpy as np

from sfc_tf.enhancement import jpeg_scan

TABLES_FILE = pathlib.Path(__file__).resolve().parent / "jpeg_tables.json"
SYMBOLS = (jpeg_scan.DC_SYMBOLS, jpeg_scan.DC_SYMBOLS, jpeg_scan.AC_SYMBOLS, jpeg_scan.AC_SYMBOLS)


def table_of_lengths(symbols: tuple[int, ...], lengths: list[int]) -> jpeg_scan.HuffmanTable:
    """The canonical Huffman table giving ``symbols[i]`` a code of ``lengths[i]`` bits."""
    order = sorted(range(len(symbols)), key=lambda i: (lengths[i], symbols[i]))
    bits = [0] * jpeg_scan.MAX_CODE_LENGTH
    for length in lengths:
        bits[length - 1] += 1
    return jpeg_scan.HuffmanTable(tuple(bits), tuple(symbols[i] for i in order))


def lengths_of_table(symbols: tuple[int, ...], table: jpeg_scan.HuffmanTable) -> list[int]:
    return [table.codes[symbol][1] for symbol in symbols]


def fitted_lengths(counts: np.ndarray) -> list[list[int]]:
    """Code lengths of the optimal tables of (4, 256) symbol counts, each possible symbol counted once more."""
    return [
        lengths_of_table(symbols, jpeg_scan.optimal_table({s: int(counts[index, s]) + 1 for s in symbols}))
        for index, symbols in enumerate(SYMBOLS)
    ]


def encode_lengths(lengths: list[list[int]]) -> list[str]:
    return ["".join(f"{length - 1:x}" for length in table) for table in lengths]


@functools.lru_cache(maxsize=None)
def _stored() -> dict[str, list[str]]:
    return json.loads(TABLES_FILE.read_text())["qualities"]


@functools.lru_cache(maxsize=128)
def tables(quality: int) -> jpeg_scan.TableSet:
    """The four Huffman tables of ``quality`` (1..100)."""
    dc_luma, dc_chroma, ac_luma, ac_chroma = (
        table_of_lengths(symbols, [int(digit, 16) + 1 for digit in text])
        for symbols, text in zip(SYMBOLS, _stored()[str(quality)])
    )
    return jpeg_scan.TableSet((dc_luma, dc_chroma), (ac_luma, ac_chroma))

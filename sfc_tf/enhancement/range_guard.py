"""A guard against a hang in tensorflow-compression 2.14's range decoder, run before a learned payload reaches it.

tfc decodes an escaped value's Elias-gamma prefix with an unbounded loop (``OverflowDecode`` in
``range_coder_kernels.cc``: ``while (DecodeLinearly(...) == 0) ++n;``). A decoder that has run past the end of its
payload reads zero bytes, and if its value then sits at the bottom of its interval every bit decodes as 0: the op
never returns (found by ``eval/fuzz_decode.py``; ``tests/fixtures/fuzz/range_decoder_hang.sfc``). This module
replays tfc's decoder state machine (``RangeDecoder`` in ``range_coder.h``: 32-bit base, size and value, 16-bit
refills, binary-search decoding) over the payload with the same CDF rows, and refuses a payload whose gamma prefix
would exceed 31 zeros, which no encoder writes (tfc's own decoder computes ``1 << n``). Where the rows depend on
what was decoded before them (the hyperprior codec), the replay returns the decoded symbols to the model, which
derives the next rows from them. It does not decide whether a payload is well-formed otherwise; that stays with tfc
and the container's CRC.
"""

from __future__ import annotations

import bisect

import numpy as np

MAX_GAMMA_ZEROS = 31
_MASK32 = 0xFFFFFFFF


def cdf_rows(cdf: np.ndarray) -> list[tuple[int, list[int]]]:
    """The (precision, CDF values) rows of a flat tfc CDF vector, as tfc's ``IndexCDFVector`` scans them."""
    values, rows, i = [int(v) for v in np.asarray(cdf).ravel()], [], 0
    while i < len(values):
        precision = values[i]
        last = 1 << abs(precision)
        j = i + 1
        while values[j] != last:
            j += 1
        rows.append((precision, values[i + 1 : j + 1]))
        i = j + 1
        while i < len(values) and values[i] == last:
            i += 1
    return rows


class Unbounded(Exception):
    """An escape code whose Elias-gamma prefix runs past ``MAX_GAMMA_ZEROS`` zeros: tfc's decoder would not return."""


class Replay:
    """tfc's ``RangeDecoder`` over one payload, decoding the symbols tfc's ``entropy_decode_index`` would return
    (a row of negative precision has an escape code: ``OverflowDecode``)."""

    def __init__(self, data: bytes):
        self.data, self.position = bytes(data), 0
        self.base, self.size_minus1, self.value = 0, _MASK32, 0
        self._read16()
        self._read16()

    def _read16(self):
        for _ in range(2):
            self.value = (self.value << 8) & _MASK32
            if self.position < len(self.data):
                self.value |= self.data[self.position]
                self.position += 1

    def decode(self, cdf: list[int], precision: int) -> int:
        size = self.size_minus1 + 1
        lower_bound = (((self.value - self.base) & _MASK32) + 1) << precision
        # the smallest cdf[k], k >= 1, with lower_bound <= size * cdf[k] (tfc's binary search)
        k = bisect.bisect_left(cdf, -(-lower_bound // size), 1)
        if k >= len(cdf):  # a decode error; tfc reads one past the row here, we stop the replay
            raise ValueError("range decoder left its CDF")
        a = (size * cdf[k - 1]) >> precision
        b = ((size * cdf[k]) >> precision) - 1
        self.base = (self.base + a) & _MASK32
        self.size_minus1 = (b - a) & _MASK32
        if self.size_minus1 >> 16 == 0:
            self.base = (self.base << 16) & _MASK32
            self.size_minus1 = ((self.size_minus1 << 16) | 0xFFFF) & _MASK32
            self._read16()
        return k - 1

    def symbols(self, rows: list[tuple[int, list[int]]], indexes) -> list[int]:
        """The symbols of ``indexes`` (the table row of each, in decoding order); ``Unbounded`` where tfc hangs.
        ``decode`` inlined, the state in locals (this loop is most of a hyperprior decode's guard)."""
        data, end, bisect_left, out = self.data, len(self.data), bisect.bisect_left, []
        base, size_minus1, value, position = self.base, self.size_minus1, self.value, self.position
        for index in np.asarray(indexes).tolist():
            precision, cdf = rows[index]
            shift = precision if precision > 0 else -precision
            size = size_minus1 + 1
            k = bisect_left(cdf, -(-((((value - base) & _MASK32) + 1) << shift) // size), 1)
            if k >= len(cdf):
                raise ValueError("range decoder left its CDF")
            low = (size * cdf[k - 1]) >> shift
            base = (base + low) & _MASK32
            size_minus1 = (((size * cdf[k]) >> shift) - 1 - low) & _MASK32
            if size_minus1 >> 16 == 0:
                base = (base << 16) & _MASK32
                size_minus1 = ((size_minus1 << 16) | 0xFFFF) & _MASK32
                for _ in range(2):
                    value = (value << 8) & _MASK32
                    if position < end:
                        value |= data[position]
                        position += 1
            symbol = k - 1
            if precision < 0 and symbol == len(cdf) - 2:
                self.base, self.size_minus1, self.value, self.position = base, size_minus1, value, position
                symbol = self._overflow(symbol)
                base, size_minus1, value, position = self.base, self.size_minus1, self.value, self.position
            out.append(symbol)
        self.base, self.size_minus1, self.value, self.position = base, size_minus1, value, position
        return out

    def _overflow(self, max_value: int) -> int:
        """The value of an escape code after its escape symbol (``OverflowDecode``'s Elias-gamma part)."""
        zeros = 0
        while self.decode(_BINARY, 1) == 0:
            zeros += 1
            if zeros > MAX_GAMMA_ZEROS:
                raise Unbounded(f"an escape code longer than {MAX_GAMMA_ZEROS} bits")
        value = 1 << zeros
        for bit in reversed(range(zeros)):
            value |= self.decode(_BINARY, 1) << bit
        return -value if self.decode(_BINARY, 1) else value + max_value - 1


_BINARY = [0, 1, 2]


class Lanes:
    """One ``Replay`` per payload, advanced together: ``next`` gives each payload's next symbols for its table rows;
    ``unbounded`` collects the payloads on which tfc would hang. A payload out of the replay (it hangs, or it left
    a CDF: not a hang, and past there the replay cannot follow tfc) gets zeros from then on."""

    def __init__(self, payloads: list[bytes], rows: list[tuple[int, list[int]]]):
        self.replays, self.rows, self.unbounded = [Replay(p) for p in payloads], rows, set()

    def next(self, table_rows: np.ndarray) -> np.ndarray:
        symbols = np.zeros(table_rows.shape, np.int32)
        for i, replay in enumerate(self.replays):
            if replay is None:
                continue
            try:
                symbols[i] = np.reshape(replay.symbols(self.rows, table_rows[i].ravel()), symbols.shape[1:])
            except Unbounded:
                self.unbounded.add(i)
                self.replays[i] = None
            except ValueError:
                self.replays[i] = None
        return symbols


def gamma_bounded(data: bytes, rows: list[tuple[int, list[int]]], indexes: np.ndarray) -> bool:
    """Whether tfc can decode ``indexes`` (the CDF row of each symbol, in decoding order) from ``data`` without an
    overflow prefix longer than ``MAX_GAMMA_ZEROS`` (False: the op would hang, or nearly)."""
    try:
        Replay(data).symbols(rows, indexes)
    except Unbounded:
        return False
    except ValueError:
        return True  # not a hang; tfc's own checks judge this payload
    return True

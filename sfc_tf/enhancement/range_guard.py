"""A guard against a hang in tensorflow-compression 2.14's range decoder, run before a learned payload reaches it.

tfc decodes an escaped value's Elias-gamma prefix with an unbounded loop (``OverflowDecode`` in
``range_coder_kernels.cc``: ``while (DecodeLinearly(...) == 0) ++n;``). A decoder that has run past the end of its
payload reads zero bytes, and if its value then sits at the bottom of its interval every bit decodes as 0: the op
never returns (found by ``eval/fuzz_decode.py``; ``tests/fixtures/fuzz/range_decoder_hang.sfc``). This module
replays tfc's decoder state machine (``RangeDecoder`` in ``range_coder.h``: 32-bit base, size and value, 16-bit
refills, binary-search decoding) over the payload with the same CDF rows, and refuses a payload whose gamma prefix
would exceed 31 zeros, which no encoder writes (tfc's own decoder computes ``1 << n``). Where the rows depend on
what was decoded before them (the hyperprior codec), the replay returns the decoded symbols to the model, which
derives the next rows from them, and ``Replay.finished`` is tfc's end-of-payload check (``RangeDecoder::Finalize``),
so a replay that ran cleanly has decoded exactly what tfc's decoder would. It does not decide whether a payload is
well-formed otherwise; that stays with tfc and the container's CRC. The decoder loop is compiled by numba (it is
most of a hyperprior decode's time in plain Python).
"""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np

MAX_GAMMA_ZEROS = 31
_MASK32 = 0xFFFFFFFF
_OK, _UNBOUNDED, _LEFT_CDF = 0, 1, 2


class CdfRows(NamedTuple):
    """The rows of a flat tfc CDF vector: row r's precision and its CDF values ``values[starts[r]:ends[r]]``."""

    precisions: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    values: np.ndarray


def cdf_rows(cdf: np.ndarray) -> CdfRows:
    """The rows of a flat tfc CDF vector, as tfc's ``IndexCDFVector`` scans them."""
    values = np.asarray(cdf, np.int64).ravel()
    precisions, starts, ends, i = [], [], [], 0
    while i < len(values):
        last = 1 << abs(int(values[i]))
        j = i + 1 + int(np.argmax(values[i + 1 :] == last))  # the row's first value at 1 << precision
        precisions.append(int(values[i]))
        starts.append(i + 1)
        ends.append(j + 1)
        i = j + 1
        while i < len(values) and values[i] == last:
            i += 1
    return CdfRows(*(np.array(a, np.int64) for a in (precisions, starts, ends)), values)


class Unbounded(Exception):
    """An escape code whose Elias-gamma prefix runs past ``MAX_GAMMA_ZEROS`` zeros: tfc's decoder would not return."""


class Replay:
    """tfc's ``RangeDecoder`` over one payload, decoding the symbols tfc's ``entropy_decode_index`` would return
    (a row of negative precision has an escape code: ``OverflowDecode``)."""

    def __init__(self, data: bytes):
        self.data = np.frombuffer(bytes(data), np.uint8)
        self.state = np.array([0, _MASK32, 0, 0], np.int64)  # base, size - 1, value, position
        for _ in range(2):
            _read16(self.data, self.state)

    def symbols(self, rows: CdfRows, indexes) -> np.ndarray:
        """The symbols of ``indexes`` (the table row of each, in decoding order); ``Unbounded`` where tfc hangs,
        ``ValueError`` where the decoder leaves a CDF (a decode error; past it the replay cannot follow tfc)."""
        indexes = np.ascontiguousarray(indexes, np.int64).ravel()
        out = np.zeros(len(indexes), np.int32)
        status = _decode(self.data, self.state, rows.precisions, rows.starts, rows.ends, rows.values, indexes, out)
        if status == _UNBOUNDED:
            raise Unbounded(f"an escape code longer than {MAX_GAMMA_ZEROS} bits")
        if status == _LEFT_CDF:
            raise ValueError("range decoder left its CDF")
        return out

    def finished(self) -> bool:
        """tfc's ``RangeDecoder::Finalize`` after the last symbol: the whole payload read, and the decoder's value
        the one its encoder's ``Finalize`` wrote (a weak check: True for some damaged payloads, never False for
        an intact one)."""
        base, size_minus1, value, position = (int(v) for v in self.state)
        if position != len(self.data):
            return False
        upper = (base + size_minus1) & _MASK32
        if base == 0 or upper < base:
            return value == 0
        shift = 24 if ((base - 1) >> 24) < (upper >> 24) else 16
        return (((((base - 1) >> shift) + 1) << shift) & _MASK32) == value


@numba.njit(cache=True, nogil=True)
def _read16(data, state):
    for _ in range(2):
        state[2] = (state[2] << 8) & _MASK32
        if state[3] < len(data):
            state[2] |= data[state[3]]
            state[3] += 1


@numba.njit(cache=True, nogil=True)
def _decode_one(data, state, values, start, end, shift):
    """One symbol of the CDF ``values[start:end]`` (tfc's ``DecodeInternal``), or -1 where the decoder leaves it."""
    size = state[1] + 1
    bound = (((state[2] - state[0]) & _MASK32) + 1) << shift
    low, high = start + 1, end  # the smallest k in [start + 1, end) with bound <= size * values[k]
    while low < high:
        mid = (low + high) // 2
        if size * values[mid] < bound:
            low = mid + 1
        else:
            high = mid
    if low >= end:
        return -1
    a = (size * values[low - 1]) >> shift
    state[0] = (state[0] + a) & _MASK32
    state[1] = (((size * values[low]) >> shift) - 1 - a) & _MASK32
    if state[1] >> 16 == 0:
        state[0] = (state[0] << 16) & _MASK32
        state[1] = ((state[1] << 16) | 0xFFFF) & _MASK32
        _read16(data, state)
    return low - 1 - start


@numba.njit(cache=True, nogil=True)
def _decode(data, state, precisions, starts, ends, values, indexes, out):
    """``out[i]``: the symbol of row ``indexes[i]``; a status (ok, unbounded escape, left a CDF)."""
    binary = np.array([0, 1, 2], np.int64)
    for i in range(len(indexes)):
        row = indexes[i]
        precision, start, end = precisions[row], starts[row], ends[row]
        symbol = _decode_one(data, state, values, start, end, abs(precision))
        if symbol < 0:
            return _LEFT_CDF
        if precision < 0 and symbol == end - start - 2:  # the escape symbol: OverflowDecode's Elias-gamma part
            zeros = 0
            while True:
                bit = _decode_one(data, state, binary, 0, 3, 1)
                if bit < 0:
                    return _LEFT_CDF
                if bit != 0:
                    break
                zeros += 1
                if zeros > MAX_GAMMA_ZEROS:
                    return _UNBOUNDED
            gamma = 1 << zeros
            for position in range(zeros - 1, -1, -1):
                bit = _decode_one(data, state, binary, 0, 3, 1)
                if bit < 0:
                    return _LEFT_CDF
                gamma |= bit << position
            sign = _decode_one(data, state, binary, 0, 3, 1)
            if sign < 0:
                return _LEFT_CDF
            symbol = -gamma if sign else gamma + symbol - 1
        out[i] = symbol
    return _OK


class Lanes:
    """One ``Replay`` per payload, advanced together: ``next`` gives each payload's next symbols for its table rows;
    ``unbounded`` collects the payloads on which tfc would hang, ``derailed`` those that left a CDF (not a hang, but
    past there the replay cannot follow tfc); either gets zeros from then on."""

    def __init__(self, payloads: list[bytes], rows: CdfRows):
        self.replays, self.rows = [Replay(p) for p in payloads], rows
        self.unbounded, self.derailed = set(), set()

    def clean(self) -> bool:
        """Whether every payload was replayed to its end and passes tfc's end check: the symbols are tfc's."""
        return not (self.unbounded or self.derailed) and all(r.finished() for r in self.replays)

    def next(self, table_rows: np.ndarray) -> np.ndarray:
        symbols = np.zeros(table_rows.shape, np.int32)
        for i, replay in enumerate(self.replays):
            if replay is None:
                continue
            try:
                symbols[i] = np.reshape(replay.symbols(self.rows, table_rows[i]), symbols.shape[1:])
            except Unbounded:
                self.unbounded.add(i)
                self.replays[i] = None
            except ValueError:
                self.derailed.add(i)
                self.replays[i] = None
        return symbols


def gamma_bounded(data: bytes, rows: CdfRows, indexes: np.ndarray) -> bool:
    """Whether tfc can decode ``indexes`` (the CDF row of each symbol, in decoding order) from ``data`` without an
    overflow prefix longer than ``MAX_GAMMA_ZEROS`` (False: the op would hang, or nearly)."""
    try:
        Replay(data).symbols(rows, indexes)
    except Unbounded:
        return False
    except ValueError:
        return True  # not a hang; tfc's own checks judge this payload
    return True

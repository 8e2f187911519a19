"""Baseline JPEG entropy coding (ITU-T T.81, Annexes F and K) of a 4:2:0 colour scan: decoding a scan to its
quantised DCT coefficients, coding the coefficients again with other Huffman tables, and the optimal tables
of symbol counts (Annex K.2, as libjpeg builds them). With these the headerless JPEG codec codes libjpeg's
coefficients with Huffman tables fixed per quality, so that neither the tables nor a per-image optimisation
pass have to be stored.
"""

from __future__ import annotations

import dataclasses
import functools

import numba
import numpy as np

from sfc_tf.errors import BitstreamError

MAX_CODE_LENGTH = 16
PAST_END_BITS = 64 * 32 + 32  # more than one block can read: 64 codes and extra bits of at most 16 bits each
ZIGZAG = np.array(
    [0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14]
    + [21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59, 52, 45, 38, 31, 39, 46, 53]
    + [60, 61, 54, 47, 55, 62, 63]
)
# Symbols a baseline 8-bit scan can use: DC difference categories 0..11; AC end of block, run of 16 zeros, and
# (run of zeros 0..15, category 1..10).
DC_SYMBOLS = tuple(range(12))
AC_SYMBOLS = (0x00, 0xF0) + tuple(run << 4 | size for run in range(16) for size in range(1, 11))
# The components of the blocks of one 4:2:0 MCU, in scan order: four luma blocks, Cb, Cr; table set 0 or 1.
MCU_COMPONENTS = (0, 0, 0, 0, 1, 2)
TABLE_SET = (0, 1, 1)
_COMPONENTS = np.array(MCU_COMPONENTS, np.int64)
_TABLE_SETS = np.array(TABLE_SET, np.int64)[_COMPONENTS]  # the table set of each block of an MCU


@dataclasses.dataclass(frozen=True)
class HuffmanTable:
    """A JPEG Huffman table as DHT stores it: counts of codes of each length 1..16, then the symbols in code
    order."""

    bits: tuple[int, ...]
    values: tuple[int, ...]

    def __post_init__(self):
        if len(self.bits) != MAX_CODE_LENGTH or sum(self.bits) != len(self.values) or not self.values:
            raise ValueError("a Huffman table needs 16 code counts that add up to its number of symbols")

    @functools.cached_property
    def codes(self) -> dict[int, tuple[int, int]]:
        """symbol -> (code, length): canonical codes, shortest first (Annex C)."""
        out, code, k = {}, 0, 0
        for length, count in enumerate(self.bits, 1):
            for _ in range(count):
                out[self.values[k]] = (code, length)
                code, k = code + 1, k + 1
            code <<= 1
        return out

    @functools.cached_property
    def lookup(self) -> tuple[np.ndarray, np.ndarray]:
        """(symbol, code length) of every 16-bit window, by the window's value (length 0: no code starts so)."""
        symbols, lengths = np.zeros(1 << 16, np.int64), np.zeros(1 << 16, np.int64)
        for symbol, (code, length) in self.codes.items():
            start = code << (16 - length)
            symbols[start : start + (1 << (16 - length))] = symbol
            lengths[start : start + (1 << (16 - length))] = length
        return symbols, lengths

    def segment_payload(self, table_class: int, index: int) -> bytes:
        """The table as one DHT entry: class (0 DC, 1 AC) and index, code counts, symbols."""
        return bytes([table_class << 4 | index, *self.bits, *self.values])


@dataclasses.dataclass(frozen=True)
class TableSet:
    """The four tables of a colour scan: DC and AC of luma (set 0), DC and AC of chroma (set 1)."""

    dc: tuple[HuffmanTable, HuffmanTable]
    ac: tuple[HuffmanTable, HuffmanTable]

    @functools.cached_property
    def encoder_tables(self) -> tuple[np.ndarray, np.ndarray]:
        """(4, 256) code and code length of each symbol for DC 0, DC 1, AC 0, AC 1 (length 0: no code)."""
        code_of, length_of = np.zeros((len(TABLES), 256), np.int64), np.zeros((len(TABLES), 256), np.int64)
        for index, table in enumerate((*self.dc, *self.ac)):
            for symbol, (code, length) in table.codes.items():
                code_of[index, symbol], length_of[index, symbol] = code, length
        return code_of, length_of

    @functools.cached_property
    def lookups(self) -> np.ndarray:
        """(4, 2, 65536): symbol and code length of every 16-bit window for DC 0, DC 1, AC 0, AC 1 (``_walk``)."""
        return np.stack([np.stack(table.lookup) for table in (*self.dc, *self.ac)]).astype(np.int16)


def _table(bits: str, values: str) -> HuffmanTable:
    return HuffmanTable(tuple(bytes.fromhex(bits)), tuple(bytes.fromhex(values)))


# Annex K.3: the tables libjpeg writes unless told to optimise.
STANDARD_TABLES = TableSet(
    (
        _table("00010501010101010100000000000000", "000102030405060708090a0b"),
        _table("00030101010101010101010000000000", "000102030405060708090a0b"),
    ),
    (
        _table(
            "0002010303020403050504040000017d",
            "01020300041105122131410613516107227114328191a1082342b1c11552d1f02433627282090a161718191a25262728292a3435"
            "363738393a434445464748494a535455565758595a636465666768696a737475767778797a838485868788898a92939495969798"
            "999aa2a3a4a5a6a7a8a9aab2b3b4b5b6b7b8b9bac2c3c4c5c6c7c8c9cad2d3d4d5d6d7d8d9dae1e2e3e4e5e6e7e8e9eaf1f2f3f4"
            "f5f6f7f8f9fa",
        ),
        _table(
            "00020102040403040705040400010277",
            "000102031104052131061241510761711322328108144291a1b1c109233352f0156272d10a162434e125f11718191a262728292a"
            "35363738393a434445464748494a535455565758595a636465666768696a737475767778797a82838485868788898a9293949596"
            "9798999aa2a3a4a5a6a7a8a9aab2b3b4b5b6b7b8b9bac2c3c4c5c6c7c8c9cad2d3d4d5d6d7d8d9dae2e3e4e5e6e7e8e9eaf2f3f4"
            "f5f6f7f8f9fa",
        ),
    ),
)


def decode(scan: bytes, tables: TableSet, blocks: int) -> np.ndarray:
    """(blocks, 64) quantised coefficients in zigzag order of a 4:2:0 colour scan (byte-stuffed, no markers);
    ``BitstreamError`` for a scan that ends early, holds a bit pattern no code starts with, or runs on past its
    last block."""
    window, dc_at, ac_at, ac_k = _walked(scan, tables, blocks)
    return _coefficients(window, tables, blocks, dc_at, ac_at, ac_k)


def check(scan: bytes, tables: TableSet, blocks: int) -> None:
    """``decode``'s checks alone: ``BitstreamError`` for a scan it would refuse."""
    _walked(scan, tables, blocks)


def _walked(scan: bytes, tables: TableSet, blocks: int) -> tuple:
    """(the 16 bits from each bit position, where each DC code, each AC code and its coefficient index start),
    following the scan's codes (``_walk``, compiled by numba)."""
    if blocks % len(MCU_COMPONENTS):
        raise ValueError("a 4:2:0 scan holds whole MCUs of 6 blocks")
    data = np.frombuffer(scan.replace(b"\xff\x00", b"\xff"), np.uint8)
    # ones past the end: no code is all ones, so reading past the end fails at the next code
    bits = np.concatenate([np.unpackbits(data), np.ones(PAST_END_BITS, np.uint8)])
    end = len(bits) - PAST_END_BITS
    window = _windows(bits)
    dc_at, ac_at, ac_k = np.zeros(blocks, np.int64), np.zeros(blocks * 63, np.int64), np.zeros(blocks * 63, np.int64)
    error, block, pos, coded = _walk(window, tables.lookups, _TABLE_SETS, blocks, end, dc_at, ac_at, ac_k)
    if error == _NO_DC:
        raise BitstreamError(f"JPEG scan: no DC code of block {block} at bit {pos}")
    if error == _NO_AC:
        raise BitstreamError(f"JPEG scan: no AC code in block {block} at bit {pos}")
    if error == _PAST_BLOCK:
        raise BitstreamError(f"JPEG scan: coefficients past the end of block {block}")
    if pos > end:
        raise BitstreamError(f"JPEG scan is {pos - end} bits short")
    if -(-pos // 8) < len(data):
        raise BitstreamError(f"JPEG scan has {len(data) - -(-pos // 8)} bytes after its last block")
    return window, dc_at, ac_at[:coded], ac_k[:coded]


@numba.njit(cache=True, nogil=True)
def _windows(bits):
    """The 16 bits from each position of ``bits`` (0/1 values) as a number, first bit highest."""
    out = np.zeros(len(bits) - 15, np.int64)
    value = 0
    for i in range(15):
        value = value << 1 | bits[i]
    for i in range(len(out)):
        value = (value << 1 | bits[i + 15]) & 0xFFFF
        out[i] = value
    return out


_NO_DC, _NO_AC, _PAST_BLOCK = 1, 2, 3


@numba.njit(cache=True, nogil=True)
def _walk(window, lookups, table_sets, blocks, end, dc_at, ac_at, ac_k):
    """Follows the codes of a scan from bit 0 (``window``: the 16 bits from each position; ``lookups``: symbol and
    code length of each 16-bit prefix for the DC tables 0, 1 and the AC tables 0, 1): fills where each block's DC
    code and each AC code (and its coefficient index) starts; returns (error, block, bit position, AC codes),
    error 0 for a walk to the end."""
    size, coded, pos = len(window), 0, 0
    for block in range(blocks):
        table_set = table_sets[block % len(table_sets)]
        if pos > end or pos >= size:
            return _NO_DC, block, pos, coded
        symbol, length = lookups[table_set, 0, window[pos]], lookups[table_set, 1, window[pos]]
        if length == 0 or symbol > 11:
            return _NO_DC, block, pos, coded
        dc_at[block] = pos
        pos += length + symbol
        k = 1
        while k < 64:
            if pos >= size:
                return _NO_AC, block, pos, coded
            symbol, length = lookups[2 + table_set, 0, window[pos]], lookups[2 + table_set, 1, window[pos]]
            run, extra = symbol >> 4, symbol & 15
            if length == 0 or extra > 10:
                return _NO_AC, block, pos, coded
            # coefficients a code moves past: run + 1, 16 for a run of 16 zeros, 0 for the end of the block
            moved = run + 1 if extra > 0 else (16 if run == 15 else 0)
            if moved == 0:
                pos += length
                break
            if k + moved > 64:
                return _PAST_BLOCK, block, pos, coded
            ac_at[coded] = pos  # a run of 16 zeros has no extra bits: it writes a zero
            ac_k[coded] = k + moved - 1
            coded += 1
            pos += length + extra
            k += moved
    return 0, blocks, pos, coded


def _value(window: np.ndarray, at: np.ndarray, size: np.ndarray) -> np.ndarray:
    """The signed values whose ``size`` extra bits start at bit positions ``at`` (F.2.2.1, EXTEND)."""
    raw = np.where(size > 0, window[at] >> (16 - size), 0)
    return np.where(raw >= (1 << np.maximum(size - 1, 0)), raw, raw - (1 << size) + 1) * (size > 0)


def _coefficients(window: np.ndarray, tables: TableSet, blocks: int, dc_at, ac_at, ac_k) -> np.ndarray:
    """The coefficients of a walked scan: DC differences accumulated per component, AC values in place."""
    coefficients = np.zeros((blocks, 64), np.int64)
    components = _COMPONENTS[np.arange(blocks) % len(_COMPONENTS)]
    table_sets = _TABLE_SETS[np.arange(blocks) % len(_TABLE_SETS)]
    ac_block = np.searchsorted(dc_at, ac_at, side="right") - 1
    ac_k = np.array(ac_k, np.int64)
    for index in (0, 1):
        symbols, lengths = tables.dc[index].lookup
        rows = np.flatnonzero(table_sets == index)
        codes = window[dc_at[rows]]
        coefficients[rows, 0] = _value(window, dc_at[rows] + lengths[codes], symbols[codes])
        symbols, lengths = tables.ac[index].lookup
        chosen = np.flatnonzero(table_sets[ac_block] == index)
        codes = window[ac_at[chosen]]
        size = symbols[codes] & 15
        coefficients[ac_block[chosen], ac_k[chosen]] = _value(window, ac_at[chosen] + lengths[codes], size)
    for component in range(3):
        rows = components == component
        coefficients[rows, 0] = np.cumsum(coefficients[rows, 0])
    return coefficients


def _category(values: np.ndarray) -> np.ndarray:
    """Bits needed for each magnitude (0 for 0)."""
    magnitude = np.abs(np.asarray(values, np.int64))
    return np.where(magnitude > 0, np.floor(np.log2(np.maximum(magnitude, 1))).astype(np.int64) + 1, 0)


TABLES = ("DC luma", "DC chroma", "AC luma", "AC chroma")  # table index = 2 * (0 DC | 1 AC) + table set


@dataclasses.dataclass(frozen=True)
class Items:
    """Every coded item of a scan, in scan order: its table (index into ``TABLES``), symbol and extra bits."""

    table: np.ndarray
    symbol: np.ndarray
    extra: np.ndarray  # the extra bits, an unsigned number of ``size`` bits
    size: np.ndarray


def items(coefficients: np.ndarray) -> Items:
    """The items a baseline scan codes for (blocks, 64) zigzag coefficients (Annex F.1.2)."""
    c = np.asarray(coefficients, np.int64)
    blocks = len(c)
    components = _COMPONENTS[np.arange(blocks) % len(_COMPONENTS)]
    table_sets = _TABLE_SETS[np.arange(blocks) % len(_TABLE_SETS)]
    differences = np.zeros(blocks, np.int64)
    for component in range(3):
        rows = components == component
        differences[rows] = np.diff(c[rows, 0], prepend=0)
    block, k = np.nonzero(c[:, 1:])
    k = k + 1
    previous = np.where(np.r_[False, block[1:] == block[:-1]], np.r_[0, k[:-1]], 0)
    run = k - previous - 1
    values = c[block, k]
    last = np.zeros(blocks, np.int64)
    last[block] = k
    eob = np.flatnonzero(last < 63)
    zrl_block, zrl_k = np.repeat(block, run // 16), np.repeat(k, run // 16)
    size, dc_size = _category(values), _category(differences)
    none = np.zeros(len(zrl_block) + len(eob), np.int64)
    key = np.concatenate(
        [np.arange(blocks) * 256, zrl_block * 256 + 2 * zrl_k - 1, block * 256 + 2 * k, eob * 256 + 255]
    )
    table = np.concatenate([table_sets, 2 + table_sets[zrl_block], 2 + table_sets[block], 2 + table_sets[eob]])
    symbol = np.concatenate([dc_size, np.full(len(zrl_block), 0xF0), (run % 16) << 4 | size, np.zeros(len(eob), int)])
    value = np.concatenate([differences, none[: len(zrl_block)], values, none[len(zrl_block) :]])
    extra_size = np.concatenate([dc_size, none[: len(zrl_block)], size, none[len(zrl_block) :]])
    order = np.argsort(key, kind="stable")
    value, extra_size = value[order], extra_size[order]
    return Items(table[order], symbol[order], np.where(value >= 0, value, value + (1 << extra_size) - 1), extra_size)


def counts(coefficients: np.ndarray) -> np.ndarray:
    """(4, 256) counts of each symbol of each table (``TABLES``) in the scan of ``coefficients``."""
    coded = items(coefficients)
    out = np.zeros((len(TABLES), 256), np.int64)
    np.add.at(out, (coded.table, coded.symbol), 1)
    return out


def encode(coefficients: np.ndarray, tables: TableSet) -> bytes:
    """The byte-stuffed scan of (blocks, 64) zigzag coefficients, padded with ones to a whole byte (the items of
    ``items``, written by ``_write``, compiled by numba)."""
    c = np.ascontiguousarray(coefficients, np.int64)
    code_of, length_of = tables.encoder_tables
    out = np.zeros(len(c) * 64 * 4 + 8, np.uint8)  # at most 27 bits (16 code + 11 extra) per coefficient
    written, table, symbol = _write(c, _COMPONENTS, _TABLE_SETS, code_of, length_of, out)
    if written < 0:
        raise ValueError(f"the {TABLES[table]} table has no code for {symbol:#04x}")
    return out[:written].tobytes().replace(b"\xff", b"\xff\x00")


@numba.njit(cache=True, nogil=True)
def _bits_of(value):
    """Bits needed for the magnitude of ``value`` (0 for 0)."""
    magnitude, bits = abs(value), 0
    while magnitude:
        magnitude >>= 1
        bits += 1
    return bits


@numba.njit(cache=True, nogil=True)
def _write(c, components, table_sets, code_of, length_of, out):
    """Writes the scan of coefficients ``c`` into ``out``: (bytes written, 0, 0), or (-1, table, symbol) for a
    symbol the tables have no code for."""
    previous = np.zeros(3, np.int64)
    buffer, filled, written = 0, 0, 0  # bits not yet written, most significant first
    items = np.empty((80, 3), np.int64)  # a block's table, symbol and value: DC, at most 63 AC, 3 ZRL, EOB
    for block in range(len(c)):
        component = components[block % len(components)]
        difference = c[block, 0] - previous[component]
        previous[component] = c[block, 0]
        table_set = table_sets[block % len(table_sets)]
        items[0, 0], items[0, 1], items[0, 2] = table_set, _bits_of(difference), difference
        count = 1
        ac, run = 2 + table_set, 0
        for k in range(1, 64):
            value = c[block, k]
            if value == 0:
                run += 1
                continue
            while run > 15:
                items[count, 0], items[count, 1], items[count, 2] = ac, 0xF0, 0
                count += 1
                run -= 16
            items[count, 0], items[count, 1], items[count, 2] = ac, run << 4 | _bits_of(value), value
            count += 1
            run = 0
        if run > 0:
            items[count, 0], items[count, 1], items[count, 2] = ac, 0x00, 0
            count += 1
        for i in range(count):
            table, symbol, value = items[i, 0], items[i, 1], items[i, 2]
            length = length_of[table, symbol]
            if length == 0:
                return -1, table, symbol
            size = symbol & 15 if table >= 2 else symbol
            extra = value if value >= 0 else value + (1 << size) - 1
            buffer = buffer << (length + size) | code_of[table, symbol] << size | extra
            filled += length + size
            while filled >= 8:
                filled -= 8
                out[written] = (buffer >> filled) & 0xFF
                written += 1
            buffer &= (1 << filled) - 1
    if filled:
        out[written] = ((buffer << (8 - filled)) | ((1 << (8 - filled)) - 1)) & 0xFF
        written += 1
    return written, 0, 0


def optimal_table(counts: dict[int, int]) -> HuffmanTable:
    """The code-length-limited Huffman table of symbol counts (Annex K.2, libjpeg's jpeg_gen_optimal_table): every
    symbol with a count > 0 gets a code, none is all ones."""
    frequency = [0] * 257
    for symbol, count in counts.items():
        frequency[symbol] = int(count)
    frequency[256] = 1  # reserves the all-ones code
    code_size, others = [0] * 257, [-1] * 257
    while True:
        live = [(f, -i) for i, f in enumerate(frequency) if f > 0]
        if len(live) < 2:
            break
        live.sort()
        first, second = -live[0][1], -live[1][1]  # the two least frequent; ties: the larger symbol
        frequency[first] += frequency[second]
        frequency[second] = 0
        for start in (first, second):
            node = start
            code_size[node] += 1
            while others[node] >= 0:
                node = others[node]
                code_size[node] += 1
        node = first
        while others[node] >= 0:
            node = others[node]
        others[node] = second
    bits = [0] * 33
    for size in code_size:
        if size:
            bits[size] += 1
    for length in range(32, MAX_CODE_LENGTH, -1):  # Figure K.3: no code longer than 16 bits
        while bits[length] > 0:
            j = length - 2
            while bits[j] == 0:
                j -= 1
            bits[length] -= 2
            bits[length - 1] += 1
            bits[j + 1] += 2
            bits[j] -= 1
    longest = max(i for i in range(MAX_CODE_LENGTH + 1) if bits[i])
    bits[longest] -= 1  # drop the reserved code
    values = [s for size in range(1, 33) for s in range(256) if code_size[s] == size]
    return HuffmanTable(tuple(bits[1 : MAX_CODE_LENGTH + 1]), tuple(values))

"""The CPU a measurement ran on: model name and the vector instruction sets that decide TensorFlow's kernels."""

from __future__ import annotations

import os
import pathlib

# AVX2/AVX-512 float32, bfloat16 dot products, int8 dot products (VNNI), Intel AMX tiles
FLAGS_OF_INTEREST = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_int8")


def describe(cpuinfo: str | os.PathLike = "/proc/cpuinfo") -> dict:
    """{"model": ..., "cores": N, "flags": {flag: bool}} of this machine (flags as ``lscpu`` lists them); flags
    and model are empty where /proc/cpuinfo cannot be read."""
    try:
        text = pathlib.Path(cpuinfo).read_text()
    except OSError:
        text = ""
    fields = dict(
        (key.strip(), value.strip())
        for key, _, value in (line.partition(":") for line in text.splitlines() if ":" in line)
    )
    present = set(fields.get("flags", "").split())
    return {
        "model": fields.get("model name", ""),
        "cores": os.cpu_count(),
        "flags": {flag: flag in present for flag in FLAGS_OF_INTEREST},
    }


def conditions() -> dict:
    """What a timing ran under, as the speed results record it: ``{"cpu": describe(), "load_average_1min": ...}``."""
    return {"cpu": describe(), "load_average_1min": os.getloadavg()[0]}

"""Which OpenBLAS kernels numpy's matrix products run on (decided before numpy is loaded).

OpenBLAS picks its kernels from the CPU when it is loaded, and on AMD Zen 4 (family 25 with
AVX-512) it picks its Skylake-X ones (AVX-512). Zen 4 executes a 512-bit instruction as two
256-bit halves, and there OpenBLAS's Haswell (AVX2) kernels run this model's float32 products
3-4% faster and the whole default fit 4-5% faster (benchmarks/README.md). So `import npvae`
asks OpenBLAS for them, through its own OPENBLAS_CORETYPE variable, when all of these hold:

* numpy is not loaded yet (afterwards the choice is made; nothing changes),
* OPENBLAS_CORETYPE is unset (a user's choice always wins: OPENBLAS_CORETYPE=SkylakeX keeps
  OpenBLAS's default on Zen 4),
* the CPU is an AMD family 25 with AVX-512 (Zen 4). Elsewhere nothing changes.

Child processes inherit the variable, which is harmless: it only ever names kernels this CPU
runs. The choice in effect is what threadpoolctl reports as "architecture".
"""
from __future__ import annotations

import os
import sys

ZEN4_KERNELS = "Haswell"


def cpu_fields(cpuinfo: str) -> dict[str, str]:
    """'key: value' lines of the first processor in the text of /proc/cpuinfo."""
    fields = {}
    for line in cpuinfo.split("\n\n", 1)[0].splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    return fields


def openblas_coretype(cpuinfo: str, environ, modules) -> str | None:
    """The OPENBLAS_CORETYPE to set for this process, or None to leave OpenBLAS alone."""
    if "numpy" in modules or "OPENBLAS_CORETYPE" in environ:
        return None
    f = cpu_fields(cpuinfo)
    zen4 = (f.get("vendor_id") == "AuthenticAMD" and f.get("cpu family") == "25"
            and "avx512f" in f.get("flags", "").split())
    return ZEN4_KERNELS if zen4 else None


def choose_kernels(cpuinfo_path: str = "/proc/cpuinfo") -> str | None:
    """Set OPENBLAS_CORETYPE when `openblas_coretype` says so; returns what was set."""
    try:
        with open(cpuinfo_path) as fh:
            cpuinfo = fh.read()
    except OSError:                   # not Linux, or no /proc: leave OpenBLAS to choose
        return None
    choice = openblas_coretype(cpuinfo, os.environ, sys.modules)
    if choice is not None:
        os.environ["OPENBLAS_CORETYPE"] = choice
    return choice

"""What the benchmarks run on: the CPU's vector width, what Numba compiles the kernels for,
which OpenBLAS kernels numpy's products use, and how fast those run the decoder's products
(benchmarks/bench_train.py, bench_kernels.py).

Three answers, because they can differ: the CPU may offer AVX-512 while Numba is told to
compile for Haswell (NUMBA_CPU_NAME / NUMBA_CPU_FEATURES, as when emulating an AVX2 host),
OpenBLAS may run its Haswell kernels on an AVX-512 CPU (OPENBLAS_CORETYPE, npvae/engine/blas.py),
and LLVM may use 256-bit registers even where 512-bit ones exist (it prefers them on many Intel
CPUs). So the loop width is read from the machine code of a small compiled loop.
"""
from __future__ import annotations

import os
import platform
import re
import time
from pathlib import Path


def cpu_flags() -> tuple[str, set[str]]:
    """(model name, flags) of the first processor in /proc/cpuinfo (Linux; else empty)."""
    from npvae.engine.blas import cpu_fields
    try:
        first = cpu_fields(Path("/proc/cpuinfo").read_text())
    except OSError:
        return platform.processor(), set()
    return first.get("model name", platform.processor()), set(first.get("flags", "").split())


def isa(flags: set[str] | str) -> str:
    """The widest x86 vector extension in a set of flags (cpuinfo names or LLVM's '+avx2')."""
    if isinstance(flags, str):
        flags = {f[1:] for f in flags.split(",") if f.startswith("+")}
    return "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else \
        "AVX" if "avx" in flags else "SSE"


def numba_target() -> dict:
    """The CPU name and ISA Numba compiles for (honouring NUMBA_CPU_NAME and
    NUMBA_CPU_FEATURES), and the register width LLVM gives a float32 loop like the kernels'
    (compiled here without the cache, which allows no inspection)."""
    import numpy as np
    from numba import njit
    from numba.core.registry import cpu_target
    cg = cpu_target.target_context.codegen()
    name, features = cg._get_host_cpu_name(), cg._get_host_cpu_features()

    @njit(cache=False, fastmath={"reassoc", "contract"})
    def probe(a, b):                         # bias_lrelu's loop
        for j in range(a.shape[0]):
            v = a[j] + b[j]
            a[j] = v if v > 0 else np.float32(0.01) * v

    v = np.ones(64, np.float32)
    probe(v, v)
    asm = next(iter(probe.inspect_asm().values()))
    width = 512 if re.search(r"%zmm", asm) else 256 if re.search(r"%ymm", asm) else 128
    return {"cpu_name": name, "isa": isa(features), "loop_bits": width}


def blas_kernels() -> list[str]:
    """Each loaded BLAS: 'openblas 0.3.31 (Haswell, 2 threads)'."""
    from threadpoolctl import threadpool_info
    return [f"{i['internal_api']} {i['version']} ({i.get('architecture')}, "
            f"{i['num_threads']} threads)" for i in threadpool_info() if i["user_api"] == "blas"]


def describe() -> dict:
    """Everything above, for a report's header."""
    model, flags = cpu_flags()
    nb = numba_target()
    return {"cpu": model, "cpu_isa": isa(flags), "numba_cpu": nb["cpu_name"],
            "numba_isa": nb["isa"], "numba_loop_bits": nb["loop_bits"], "blas": blas_kernels()}


def one_line(d: dict) -> str:
    """'CPU: ... (AVX-512); Numba: haswell, AVX2, 256-bit loops; BLAS: ...'."""
    return (f"CPU: {d['cpu']} ({d['cpu_isa']}); Numba compiles for {d['numba_cpu']} "
            f"({d['numba_isa']}, {d['numba_loop_bits']}-bit loops); BLAS: "
            f"{'; '.join(d['blas'])}")


def gemm_rate(cfg, seconds: float = 3.0, per_thread: bool = False,
              cpu: bool = False) -> float:
    """float32 GFLOP/s of the decoder's biggest product and its two backward products,
    (B*K, G) x (G, D), (G, B*K) x (B*K, D), (B*K, D) x (D, G): BLAS on all cores, or
    (per_thread) as the fit runs them, each of T = cores Python threads on its own B*K/T rows
    with single-threaded BLAS, all at once. cpu (with per_thread): timed by each thread's CPU
    clock (the slowest thread's), which other processes on the cores do not inflate."""
    import numpy as np
    from npvae.engine.threads import Team, blas_single_thread, split
    R, G, D = cfg.batch_size * cfg.K, cfg.decoder_dims[-1], cfg.input_dim
    T = os.cpu_count() if per_thread else 1
    rng = np.random.default_rng(0)

    def arrays(r):
        ins = [rng.standard_normal(s).astype(np.float32) for s in ((r, G), (G, D), (r, D))]
        return ins, [np.empty(s, np.float32) for s in ((r, D), (G, D), (r, G))]

    work = [arrays(r1 - r0) for r0, r1 in split(R, T)]

    def products(t, item, _):
        (h, w, dl), out = work[t]
        c = time.thread_time()
        for _ in range(item):
            np.matmul(h, w, out=out[0])
            np.matmul(h.T, dl, out=out[1])
            np.matmul(dl, w.T, out=out[2])
        return time.thread_time() - c

    team = Team(T)
    with blas_single_thread(T):
        team.run(products, [5] * T)
        best, end = np.inf, time.perf_counter() + seconds
        while time.perf_counter() < end:          # best of repeated batches of 10
            t = time.perf_counter()
            c = max(team.run(products, [10] * T))
            best = min(best, (c if cpu and per_thread else time.perf_counter() - t) / 10)
    return 3 * 2 * R * G * D / best / 1e9

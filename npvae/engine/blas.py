"""Which OpenBLAS kernels numpy's matrix products run on: chosen by measurement, once per
machine, before numpy is loaded.

OpenBLAS picks its kernels from the CPU when it is loaded; on a CPU with AVX-512 it picks its
Skylake-X family (AVX-512). Those are not the fastest everywhere for this model's float32
products: on AMD Zen 4, which executes a 512-bit instruction as two 256-bit halves, its
Haswell (AVX2) kernels ran them faster, while on an Intel Xeon with AVX-512 the Skylake-X ones
are much faster (benchmarks/README.md has the figures). So instead of a table of CPU names,
the first `import npvae` on a CPU with AVX-512 times the decoder's products as the fit runs
them (one thread, (640, 256) x (256, 784) and its two backward products) under OpenBLAS's own
pick and under its Haswell kernels, in short child processes taken in turn (best of two each,
timed by CPU time so that other processes on the cores do not decide it), and asks for the
Haswell kernels, through OpenBLAS's own OPENBLAS_CORETYPE variable, when they are more than 2%
faster. The answer is kept in $XDG_CACHE_HOME/npvae/openblas.json (default ~/.cache), per CPU
model, flags and numpy version, so later imports only read it. Nothing is measured or changed
when

* numpy is loaded already (the choice is made; nothing would change),
* OPENBLAS_CORETYPE is set (a user's choice always wins; child processes inherit ours),
* the CPU has no AVX-512 (OpenBLAS has no second kernel family to compare there), or
  /proc/cpuinfo cannot be read.

The choice in effect is what threadpoolctl reports as "architecture" (run.json records it).
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path

ALTERNATIVE = "Haswell"          # the kernels compared with OpenBLAS's own pick
MARGIN = 1.02                    # ... and asked for only when this much faster

# the child's measurement: GFLOP/s of the decoder's three products on one thread, the best of
# ~0.3 s, timed by the thread's CPU clock (not the wall clock: other processes on the cores
# delay a product but do not add to its CPU time)
_PROBE = """import time, numpy as np
R, G, D = 640, 256, 784
rng = np.random.default_rng(0)
h, w, dl = (rng.standard_normal(s).astype(np.float32) for s in ((R, G), (G, D), (R, D)))
o = [np.empty(s, np.float32) for s in ((R, D), (G, D), (R, G))]
best, end = 1e9, time.thread_time() + 0.3
for i in range(2000):
    t = time.thread_time()
    np.matmul(h, w, out=o[0]); np.matmul(h.T, dl, out=o[1]); np.matmul(dl, w.T, out=o[2])
    best = min(best, time.thread_time() - t)
    if t > end and i > 3:
        break
print(6 * R * G * D / best / 1e9)"""


def cpu_fields(cpuinfo: str) -> dict[str, str]:
    """'key: value' lines of the first processor in the text of /proc/cpuinfo."""
    fields = {}
    for line in cpuinfo.split("\n\n", 1)[0].splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    return fields


def needs_choice(cpuinfo: str, environ, modules) -> bool:
    """Is there a choice to make: numpy not loaded, OPENBLAS_CORETYPE unset, AVX-512 CPU?"""
    if "numpy" in modules or "OPENBLAS_CORETYPE" in environ:
        return False
    return "avx512f" in cpu_fields(cpuinfo).get("flags", "").split()


def decide(rates: dict[str, list[float]]) -> str | None:
    """The kernels to ask for from measured GFLOP/s {"default": [...], ALTERNATIVE: [...]}:
    ALTERNATIVE when its best is more than MARGIN times the default's, else None."""
    default, alt = max(rates["default"]), max(rates[ALTERNATIVE])
    return ALTERNATIVE if alt > MARGIN * default else None


def measure(python: str = sys.executable, rounds: int = 2) -> dict[str, list[float]]:
    """GFLOP/s of the probe under OpenBLAS's pick and under ALTERNATIVE, in child processes
    taken in turn (one BLAS thread each, as the fit's threads run them)."""
    rates: dict[str, list[float]] = {"default": [], ALTERNATIVE: []}
    base = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}
    base["OPENBLAS_NUM_THREADS"] = "1"
    for _ in range(rounds):
        for name in rates:
            env = base if name == "default" else {**base, "OPENBLAS_CORETYPE": name}
            out = subprocess.run([python, "-c", _PROBE], env=env, capture_output=True,
                                 text=True, check=True, timeout=60)
            rates[name].append(float(out.stdout.split()[-1]))
    return rates


def cache_key(cpuinfo: str) -> str:
    f = cpu_fields(cpuinfo)
    try:
        np_version = importlib.metadata.version("numpy")
    except importlib.metadata.PackageNotFoundError:
        np_version = "?"
    text = "|".join((f.get("model name", ""), f.get("flags", ""), np_version))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cache_file(environ) -> Path:
    root = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "npvae" / "openblas.json"


def cached_choice(cpuinfo: str, environ, measure_fn=measure) -> str | None:
    """The cached decision for this CPU and numpy, or a new measurement (then cached). A
    measurement that fails leaves OpenBLAS's pick (None), not cached."""
    path, key = cache_file(environ), cache_key(cpuinfo)
    try:
        entries = json.loads(path.read_text())
    except (OSError, ValueError):
        entries = {}
    if isinstance(entries, dict) and isinstance(entries.get(key), dict):
        return entries[key].get("choice")
    try:
        rates = measure_fn()
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None
    choice = decide(rates)
    entries = entries if isinstance(entries, dict) else {}
    entries[key] = {"choice": choice, "gflops": rates}
    try:                                         # written whole, then renamed: no torn file
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(entries, indent=1))
        os.replace(tmp, path)
    except OSError:                              # read-only home: measure again next time
        pass
    return choice


def choose_kernels(cpuinfo_path: str = "/proc/cpuinfo", measure_fn=measure) -> str | None:
    """Set OPENBLAS_CORETYPE when the measurement (cached) says so; returns what was set."""
    try:
        with open(cpuinfo_path) as fh:
            cpuinfo = fh.read()
    except OSError:                   # not Linux, or no /proc: leave OpenBLAS to choose
        return None
    if not needs_choice(cpuinfo, os.environ, sys.modules):
        return None
    choice = cached_choice(cpuinfo, os.environ, measure_fn)
    if choice is not None:
        os.environ["OPENBLAS_CORETYPE"] = choice
    return choice

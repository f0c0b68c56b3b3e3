"""npvae/engine/blas.py: OpenBLAS's kernels chosen by a measurement made once per machine (cached),
only on AVX-512 CPUs, never over a user's choice or after numpy is loaded."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from npvae.engine import blas


def cpuinfo(vendor="AuthenticAMD", family=25, flags="fpu avx2 fma avx512f avx512bw"):
    block = (f"processor\t: {{n}}\nvendor_id\t: {vendor}\ncpu family\t: {family}\n"
             f"model\t\t: 17\nmodel name\t: AMD EPYC\nflags\t\t: {flags}\n")
    return block.format(n=0) + "\n" + block.format(n=1)


@pytest.mark.parametrize("text, expected", [
    (cpuinfo(), True),                                       # Zen 4
    (cpuinfo(vendor="GenuineIntel", family=6), True),        # Skylake-X and later
    (cpuinfo(flags="fpu avx2 fma"), False),                  # Zen 3, Haswell: nothing to compare
    ("", False),                                             # unreadable
])
def test_only_avx512_cpus_have_a_choice(text, expected):
    assert blas.needs_choice(text, environ={}, modules={}) is expected


def test_a_users_choice_or_a_loaded_numpy_is_never_overridden():
    assert not blas.needs_choice(cpuinfo(), {"OPENBLAS_CORETYPE": "SkylakeX"}, {})
    assert not blas.needs_choice(cpuinfo(), {}, {"numpy": object()})


@pytest.mark.parametrize("alt, expected", [(110.0, "Haswell"), (101.0, None), (90.0, None)])
def test_the_alternative_must_win_by_the_margin(alt, expected):
    assert blas.decide({"default": [95.0, 100.0], "Haswell": [alt, 80.0]}) == expected


def test_the_measurement_is_made_once_and_cached(tmp_path):
    env, calls = {"XDG_CACHE_HOME": str(tmp_path)}, []

    def fake(rates):
        def measure():
            calls.append(1)
            return rates
        return measure

    faster = {"default": [100.0], "Haswell": [120.0]}
    assert blas.cached_choice(cpuinfo(), env, fake(faster)) == "Haswell"
    assert blas.cached_choice(cpuinfo(), env, fake({"default": [1.0], "Haswell": [0.5]})) \
        == "Haswell" and len(calls) == 1                      # read back, not measured again
    saved = json.loads((tmp_path / "npvae" / "openblas.json").read_text())
    assert [e["gflops"] for e in saved.values()] == [faster]
    other = cpuinfo(vendor="GenuineIntel", family=6, flags="fpu avx2 avx512f avx512vl")
    assert blas.cached_choice(other, env, fake({"default": [120.0], "Haswell": [80.0]})) is None
    assert len(calls) == 2 and len(json.loads((tmp_path / "npvae" / "openblas.json")
                                             .read_text())) == 2


def test_a_failed_measurement_changes_nothing_and_is_not_cached(tmp_path):
    def broken():
        raise subprocess.CalledProcessError(1, "python")
    assert blas.cached_choice(cpuinfo(), {"XDG_CACHE_HOME": str(tmp_path)}, broken) is None
    assert not (tmp_path / "npvae" / "openblas.json").exists()


def test_the_probe_measures_both_kernel_families():
    rates = blas.measure(rounds=1)
    assert set(rates) == {"default", "Haswell"}
    assert all(len(v) == 1 and v[0] > 0 for v in rates.values())


def test_cpu_fields_reads_the_first_processor():
    f = blas.cpu_fields(cpuinfo() + "\nprocessor\t: 2\nvendor_id\t: Other\n")
    assert f["vendor_id"] == "AuthenticAMD" and f["cpu family"] == "25"
    assert "avx512f" in f["flags"].split()


def test_missing_cpuinfo_changes_nothing(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENBLAS_CORETYPE", raising=False)
    assert blas.choose_kernels(str(tmp_path / "no-cpuinfo")) is None
    assert "OPENBLAS_CORETYPE" not in os.environ


def test_in_a_fresh_process_the_cached_choice_is_applied(tmp_path):
    """`import npvae` first in a new interpreter, with a cache saying "Haswell" for this
    machine: OPENBLAS_CORETYPE is Haswell on an AVX-512 CPU and unset elsewhere; a value the
    user set is kept."""
    try:
        text = open("/proc/cpuinfo").read()
    except OSError:
        text = ""
    path = blas.cache_file({"XDG_CACHE_HOME": str(tmp_path)})
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({blas.cache_key(text): {"choice": "Haswell", "gflops": {}}}))
    code = "import os, npvae; print(os.environ.get('OPENBLAS_CORETYPE'))"
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}
    env["XDG_CACHE_HOME"] = str(tmp_path)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == ("Haswell" if blas.needs_choice(text, {}, {}) else "None")
    env["OPENBLAS_CORETYPE"] = "Prescott"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "Prescott"

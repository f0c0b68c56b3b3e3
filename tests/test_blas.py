"""npvae/blas.py: OpenBLAS's Haswell kernels on Zen 4, and nowhere else, never over a choice."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from npvae import blas


def cpuinfo(vendor="AuthenticAMD", family=25, flags="fpu avx2 fma avx512f avx512bw"):
    block = (f"processor\t: {{n}}\nvendor_id\t: {vendor}\ncpu family\t: {family}\n"
             f"model\t\t: 17\nmodel name\t: AMD EPYC\nflags\t\t: {flags}\n")
    return block.format(n=0) + "\n" + block.format(n=1)


def test_zen4_gets_the_haswell_kernels():
    assert blas.openblas_coretype(cpuinfo(), environ={}, modules={}) == "Haswell"


@pytest.mark.parametrize("text", [
    cpuinfo(family=26),                                     # Zen 5: full-width AVX-512
    cpuinfo(flags="fpu avx2 fma"),                          # Zen 3: no AVX-512
    cpuinfo(vendor="GenuineIntel", family=6),               # Skylake-X and later
    "",                                                     # unreadable
])
def test_other_cpus_are_left_alone(text):
    assert blas.openblas_coretype(text, environ={}, modules={}) is None


def test_a_users_choice_or_a_loaded_numpy_is_never_overridden():
    assert blas.openblas_coretype(cpuinfo(), {"OPENBLAS_CORETYPE": "SkylakeX"}, {}) is None
    assert blas.openblas_coretype(cpuinfo(), {}, {"numpy": object()}) is None


def test_cpu_fields_reads_the_first_processor():
    f = blas.cpu_fields(cpuinfo() + "\nprocessor\t: 2\nvendor_id\t: Other\n")
    assert f["vendor_id"] == "AuthenticAMD" and f["cpu family"] == "25"
    assert "avx512f" in f["flags"].split()


def test_missing_cpuinfo_changes_nothing(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENBLAS_CORETYPE", raising=False)
    assert blas.choose_kernels(str(tmp_path / "no-cpuinfo")) is None
    assert "OPENBLAS_CORETYPE" not in os.environ


def test_in_a_fresh_process_the_variable_is_set_only_by_the_rule():
    """`import npvae` first in a new interpreter: OPENBLAS_CORETYPE is what the rule gives for
    this machine's CPU; a value the user set is kept."""
    code = "import os, npvae; print(os.environ.get('OPENBLAS_CORETYPE'))"
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout.strip()
    try:
        text = open("/proc/cpuinfo").read()
    except OSError:
        text = ""
    assert out == str(blas.openblas_coretype(text, {}, {}))
    env["OPENBLAS_CORETYPE"] = "Prescott"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "Prescott"

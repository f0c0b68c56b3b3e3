"""What benchmarks/bench_train.py reports about the host and the model's work: the vector
width read from CPU flags and from what Numba compiles for, and the FLOP count per phase."""
from __future__ import annotations

import dataclasses

import numba
import pytest

from benchmarks import host
from benchmarks.bench_train import model_flops
from npvae import Config


@pytest.mark.parametrize("flags, expected", [
    ({"fpu", "avx", "avx2", "fma", "avx512f", "avx512bw"}, "AVX-512"),
    ({"fpu", "avx", "avx2", "fma"}, "AVX2"),                 # Zen 3, Haswell
    ("+avx,+avx2,+fma,-avx512f,-avx512bw", "AVX2"),          # LLVM's list: '-' is switched off
    ("+avx,+avx2,+avx512f", "AVX-512"),
    ({"sse2"}, "SSE"),
])
def test_vector_width_from_flags(flags, expected):
    assert host.isa(flags) == expected


@pytest.mark.skipif(numba.config.DISABLE_JIT, reason="reads compiled machine code")
def test_numba_target_names_what_it_compiles_for():
    t = host.numba_target()
    assert t["loop_bits"] in (128, 256, 512)
    assert t["loop_bits"] < 512 or t["isa"] == "AVX-512"     # zmm registers need AVX-512


def test_phase_flops_add_up_to_the_documented_totals():
    cfg = Config()
    f = model_flops(cfg, n_train=4500, n_val=500)
    assert sum(f["phases"].values()) == f["total"]
    # the numbers in bench_train.py's docstring and benchmarks/README.md
    assert round(f["train_per_image"] / 1e6, 1) == 15.6
    assert round(f["eval_per_image"] / 1e6, 1) == 5.3
    assert round(f["total"] / 1e12, 2) == 4.84
    # forward and evaluation cost the same per image; the backward pass about twice that
    per_image = {k: v / (cfg.epochs * (5000 if k == "evaluation" else 4500))
                 for k, v in f["phases"].items()}
    assert per_image["forward"] == per_image["evaluation"] == f["eval_per_image"]
    assert 1.9 < per_image["backward"] / per_image["forward"] < 2


WIDTHS = ("hidden_dims", "decoder_dims", "classifier_dims", "input_dim", "embed_dim",
          "pathway_dim")


def test_the_fixed_cost_probe_narrows_only_the_widths(capsys):
    """bench_kernels.py --fixed times the default run's step and evaluation with every layer
    narrowed: K, batch sizes, depth, threads and everything else stay the default run's, so
    that what it times is what every default step pays besides its arithmetic."""
    from benchmarks.bench_kernels import fixed_costs, narrow
    cfg, small = Config(), narrow(Config())
    for f in dataclasses.fields(Config):
        if f.name not in WIDTHS:
            assert getattr(small, f.name) == getattr(cfg, f.name), f.name
    for name in WIDTHS[:3]:
        assert len(getattr(small, name)) == len(getattr(cfg, name))
        assert max(getattr(small, name)) <= 8 < min(getattr(cfg, name))
    assert small.input_dim == 16 < cfg.input_dim
    out = fixed_costs(2, {"step": 1.0})
    assert out.keys() == {"step", "chunks"} and all(v > 0 for v in out.values())
    printed = capsys.readouterr().out
    assert f"{out['step'] / 1.0:.1%} of the default run's" in printed

"""The exercises of docs/math.md section 12: every `gradient_check.py --break NAME` gives the
outcome its answer predicts (exact rel_err values, which rows fail, which still pass), the
library is left as it was, and a break whose line has changed stops with a clear message."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from npvae.core import layers
from npvae.core import model
from npvae.core.config import Config
from conftest import load_example

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "examples" / "gradient_check.py"
BATCH, ENTRIES = 4, 2                  # the tiny settings of the script


def load_script():
    return load_example("gradient_check")


GC = load_script()
BREAKS = GC._breaks.BREAKS


def test_at_least_five_exercises_each_with_a_prediction():
    assert len(BREAKS) >= 5
    for name, b in BREAKS.items():
        assert b.question.strip() and b.answer.strip() and b.affected, name
        assert b.line != b.wrong, name


@pytest.mark.parametrize("name", list(BREAKS))
def test_break_gives_the_predicted_outcome(name):
    b = BREAKS[name]
    rng = np.random.default_rng(42)
    with GC._breaks.broken(name):
        rows = GC.check_layers(rng)
        model_rows, _ = GC.check_model(BATCH, ENTRIES, rng)
    rows += model_rows
    problems = GC._breaks.verdict(b, rows, 1e-5, BATCH, Config().K)
    assert not problems, f"--break {name}: " + "; ".join(problems)
    errs = {key: err for key, _, _, err in rows}
    assert max(errs.values()) > 1e-2, "a break must make the check fail"
    if not b.loss_rows_pass:
        assert any(errs[key] > 1e-5 for key, *_ in model_rows), "the whole loss must notice"
    else:
        assert all(errs[key] <= 1e-5 for key, *_ in model_rows)


def test_the_library_is_restored_after_a_break():
    originals = (layers.reparam_backward, model.decoder_backward, model.terms_backward)
    for name in ("reparam", "decoder-sum", "q-path"):
        with GC._breaks.broken(name):
            assert (layers.reparam_backward, model.decoder_backward,
                    model.terms_backward) != originals
    assert (layers.reparam_backward, model.decoder_backward, model.terms_backward) == originals


def test_a_line_that_changed_is_reported(monkeypatch):
    b = BREAKS["reparam"]
    monkeypatch.setitem(BREAKS, "reparam", type(b)(b.where, "return dz, dz * 0.75 * s * eps",
                                                    b.wrong, b.mistake, b.question, b.answer))
    with pytest.raises(SystemExit, match="is not \\(once\\) in npvae/core/layers.py:reparam_backward"):
        with GC._breaks.broken("reparam"):
            pass


def test_the_command_line_exercise(tmp_path):
    """The example the issue names: --break reparam shows 1/3 and says it matches."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NPVAE_EXAMPLE_TINY": "1"}
    proc = subprocess.run([sys.executable, str(SCRIPT), "--break", "reparam", "--out", tmp_path],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert proc.returncode == 1, proc.stderr               # the check fails, as it should
    assert "| reparam | input 1 (4, 2) | 3.33e-01 | **NO** |" in proc.stdout
    assert "- return dz, dz * 0.5 * s * eps" in proc.stdout
    assert "the tables match the prediction" in proc.stdout
    assert "Broken on purpose" in (tmp_path / "gradient_check.md").read_text()

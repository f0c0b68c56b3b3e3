"""Deliberate bugs for examples/gradient_check.py --break NAME: the exercises of docs/math.md.

Each break names one line of the library (npvae/core/layers.py or npvae/core/model.py), the wrong
version a student might write, and what the gradient check will then print. The library's
files are never edited: `broken(name)` takes the function's source, swaps that one line,
compiles the result in the module's namespace and puts it in the module's place until the
`with` block ends. If the library's line changes, the break stops with a message naming it
(tests/test_exercises.py runs every break, so that cannot go unnoticed).

Predictions are of two kinds: `exact` rows, whose rel_err follows from the bug alone (a
gradient scaled by a factor r gives |r n - n| / (|r n| + |n|) = |r - 1| / (|r| + 1)), and the
set of rows the bug can reach (`affected`, name prefixes); every other row must still pass.
"""
from __future__ import annotations

import contextlib
import importlib
import inspect
import textwrap
from dataclasses import dataclass, field
from typing import Callable

TRUNK = ("enc0.", "enc1.", "enc2.")        # the encoder trunk of the default model


def scaled(r: float) -> float:
    """rel_err of an analytic gradient that is r times the true one."""
    return abs(r - 1.0) / (abs(r) + 1.0)


@dataclass(frozen=True)
class Break:
    where: str                 # "npvae/core/layers.py:reparam_backward"
    line: str                  # the library's line, exactly, without indent and comment
    wrong: str                 # what the student wrote instead
    mistake: str               # the mistake, in words
    question: str              # what to predict
    answer: str                # the prediction, in words
    # (batch, K) -> {row: predicted rel_err, or a (low, high) range}; rows are named
    # "<layer> input <i>" (the layer table) or by a parameter array (the whole-loss table)
    exact: Callable[[int, int], dict] = field(default=lambda batch, K: {})
    affected: tuple[str, ...] = ()   # prefixes of the rows the bug can change
    loss_rows_pass: bool = False     # True: every whole-loss row must still pass


BREAKS: dict[str, Break] = {
    "reparam": Break(
        "npvae/core/layers.py:reparam_backward", "return dz, dz * 0.5 * s * eps",
        "return dz, dz * s * eps",
        "the 1/2 of d exp(lv/2) / d lv is missing",
        "what rel_err does the layer row `reparam input 1` (the lv input) show?",
        "1/3 = 0.333: the analytic gradient is twice the true one n, and (2n - n)/(2n + n) = "
        "1/3. In the whole loss the log-variance head (`enc_lv.W`, `enc_lv.b`) and the trunk "
        "fail by less, because the Gaussian KL adds a correct part to the adjoint of lv",
        lambda batch, K: {"reparam input 1": scaled(2.0)},
        ("reparam input 1", "enc_lv.", *TRUNK)),
    "kl-sign": Break(
        "npvae/core/layers.py:gauss_kl_backward", "return dy * mu, dy * 0.5 * (np.exp(lv) - 1.0)",
        "return dy * mu, dy * 0.5 * (1.0 - np.exp(lv))",
        "a sign error in dKL/dlv",
        "what rel_err does the layer row `gauss_kl input 1` show?",
        "exactly 1: the analytic gradient is minus the true one n, and 2n/(n + n) = 1. In "
        "the whole loss the log-variance head (`enc_lv.W`, `enc_lv.b`) and the trunk fail",
        lambda batch, K: {"gauss_kl input 1": scaled(-1.0)},
        ("gauss_kl input 1", "enc_lv.", *TRUNK)),
    "bias-sum": Break(
        "npvae/core/layers.py:linear_backward", "return dy @ W.T, x.T @ dy, dy.sum(axis=0)",
        "return dy @ W.T, x.T @ dy, dy.mean(axis=0)",
        "the bias gradient averages over the rows instead of summing (rule 2 forgotten)",
        "what rel_err does each bias row show, given how many rows each layer sees?",
        "(R - 1)/(R + 1) for a layer applied to R rows (the gradient is 1/R of the true one): "
        "3/5 = 0.6 for the layer check's 4 rows; in the whole loss, with batch B and K "
        "components, (B - 1)/(B + 1) = 7/9 = 0.778 at B = 8 for the biases of the encoder, "
        "`dec_z` and the classifier, (BK - 1)/(BK + 1) = 79/81 = 0.975 for `dec0` to `dec2` "
        "(B K rows) and (K - 1)/(K + 1) = 9/11 = 0.818 for `dec_e` (K rows). Every weight "
        "matrix still passes: dW and dx do not use this line",
        lambda batch, K: {"linear input 2": scaled(1 / 4),
                          **{f"{n}.b": scaled(1 / batch) for n in
                             ("enc0", "enc1", "enc2", "enc_c", "enc_mu", "enc_lv", "dec_z",
                              "cls0", "cls1", "cls2")},
                          **{f"dec{i}.b": scaled(1 / (batch * K)) for i in range(3)},
                          "dec_e.b": scaled(1 / K)},
        ("linear input 2",) + tuple(f"{n}.b" for n in
                                    ("enc0", "enc1", "enc2", "enc_c", "enc_mu", "enc_lv",
                                     "dec_z", "dec_e", "dec0", "dec1", "dec2", "cls0", "cls1",
                                     "cls2"))),
    "decoder-sum": Break(
        "npvae/core/model.py:decoder_backward", "dhz = dg[:, :, :P].sum(axis=1)",
        "dhz = dg[:, :, :P].mean(axis=1)",
        "the z pathway's adjoint averages over the K components instead of summing",
        "what rel_err do dec_z.W and dec_z.b show, with K = 10?",
        "(K - 1)/(K + 1) = 9/11 = 0.818 for both: their whole gradient is divided by K. The "
        "adjoint of z is wrong too, so the mean and log-variance heads and the trunk fail; "
        "the component pathway (`dec_e`, `embed`), the decoder MLP, the classifier and the "
        "component head `enc_c` pass",
        lambda batch, K: {"dec_z.W": scaled(1 / K), "dec_z.b": scaled(1 / K)},
        ("dec_z.", "enc_mu.", "enc_lv.", *TRUNK)),
    "q-path": Break(
        "npvae/core/model.py:terms_backward", "dq = cfg.w_rec / B * bce",
        "dq = 0.0 * bce",
        "the reconstruction's gradient does not reach q (as if q were a constant weight)",
        "which arrays fail, and is the error small or large?",
        "`enc_c.W` and `enc_c.b` fail with rel_err close to 1 (above 0.9): the "
        "reconstruction is almost all of their gradient (the categorical KL and the usage "
        "entropy that remain are tiny); the trunk fails too. The decoder, the classifier, "
        "the prior and the mean and log-variance heads pass",
        lambda batch, K: {"enc_c.W": (0.9, 1.0), "enc_c.b": (0.9, 1.0)},
        ("enc_c.", *TRUNK)),
    "dirichlet-alpha": Break(
        "npvae/core/layers.py:dirichlet_backward",
        "return clip_log_backward(np.full_like(cache_l, -(alpha - 1.0) * dy), cache_l)",
        "return clip_log_backward(np.full_like(cache_l, -alpha * dy), cache_l)",
        "the Dirichlet's exponent alpha - 1 written as alpha",
        "what rel_err does the layer row `dirichlet input 0` show, with alpha = 5?",
        "1/9 = 0.111: the gradient is alpha/(alpha - 1) = 5/4 times the true one, and "
        "(5/4 - 1)/(5/4 + 1) = 1/9. In the whole loss only `pi_logits` can fail",
        lambda batch, K: {"dirichlet input 0": scaled(5 / 4)},
        ("dirichlet input 0", "pi_logits")),
    "cat-kl-constant": Break(
        "npvae/core/layers.py:cat_kl_backward",
        "dq = dy * np.where(inside, lq - lpi, 0.0) + clip_log_backward(dy * cq, cache_q)",
        "dq = dy * np.where(inside, lq - lpi, 0.0)",
        "the +1 of d(q log q)/dq = log q + 1 is dropped",
        "the layer row `cat_kl input 0` fails; does the whole-loss check fail too?",
        "no: every whole-loss row passes. The missing term adds the same constant w_klc/B to "
        "every entry of a row of the adjoint of q, and the softmax backward maps a constant "
        "row to 0 (docs/math.md section 8.5)",
        lambda batch, K: {},
        ("cat_kl input 0",), loss_rows_pass=True),
}


def exercises_markdown() -> str:
    """Section 12 of docs/math.md: one exercise per break, the answer folded (generated, so
    that the page states exactly the predictions the script checks)."""
    parts = []
    for number, (name, b) in enumerate(BREAKS.items(), 1):
        parts.append(
            f"**12.{number} `--break {name}`: {b.mistake}.** In `{b.where}`, the line\n\n"
            f"```python\n{b.line}\n```\n\nbecomes\n\n```python\n{b.wrong}\n```\n\n"
            f"Predict: {b.question}\n\n"
            f"<details><summary>Answer</summary>\n\n{b.answer}.\n\n</details>")
    return "\n\n".join(parts)


@contextlib.contextmanager
def broken(name: str):
    """Within the block, the library function of BREAKS[name] has its line swapped."""
    b = BREAKS[name]
    path, func = b.where.split(":")
    module = importlib.import_module(path[:-3].replace("/", "."))
    original = getattr(module, func)
    source = textwrap.dedent(inspect.getsource(original))
    lines = [ln for ln in source.splitlines() if ln.split("  #")[0].strip() == b.line]
    if len(lines) != 1:
        raise SystemExit(f"error: --break {name}: the line `{b.line}` is not (once) in "
                         f"{b.where} any more; update examples/_breaks.py.")
    indent = lines[0][:len(lines[0]) - len(lines[0].lstrip())]
    namespace = dict(vars(module))
    exec(compile(source.replace(lines[0], indent + b.wrong), f"<{b.where}, broken>", "exec"),
         namespace)
    setattr(module, func, namespace[func])
    try:
        yield b
    finally:
        setattr(module, func, original)


def describe(want) -> str:
    """A predicted rel_err in words: '0.3333' or 'between 0.9 and 1'."""
    return f"between {want[0]:g} and {want[1]:g}" if isinstance(want, tuple) else f"{want:.4f}"


def verdict(b: Break, rows: list[tuple[str, str, str, float]], tol: float, batch: int,
            K: int) -> list[str]:
    """What differs from the prediction (empty: the check printed what was predicted).
    rows: (key, name, detail, rel_err) of both tables."""
    errs = {key: err for key, _, _, err in rows}
    problems = []
    for key, want in b.exact(batch, K).items():
        lo, hi = want if isinstance(want, tuple) else (want * (1 - 1e-4), want * (1 + 1e-4))
        if key not in errs:
            problems.append(f"{key}: no such row")
        elif not lo <= errs[key] <= hi:
            problems.append(f"{key}: rel_err {errs[key]:.6f}, predicted {describe(want)}")
    for key, err in errs.items():
        hit = key.startswith(b.affected) and not (b.loss_rows_pass and " input " not in key)
        if not hit and err > tol:
            problems.append(f"{key}: rel_err {err:.2e} but this line cannot reach it")
    if not any(errs[k] > tol for k in errs if k.startswith(b.affected)):
        problems.append("no row fails: the bug went unnoticed")
    return problems

"""What `python -m npvae.sweep` writes: sweep.csv, SWEEP.md and accuracy_by_seed.png.

    build_rows(points, cfgs, names, results)  one flat dict per run (the sweep.csv rows)
    interval(values, level)                   n, mean, std (ddof 1), Student-t interval
    write_all(out, rows, varied, info)        the three files

A "setting" is a grid point without its seed: its runs are the seeds, summarised by the mean,
the sample standard deviation and the 95% t-interval mean +- t(0.975, n-1) std / sqrt(n)
(t-distribution quantile, scipy). Only runs that finished (status ok) are summarised. Held-out
accuracy is on each run's validation split; the baselines use that run's split and training
labels only (npvae/reporting/baselines.py).
"""
from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import numpy as np

from npvae.reporting.baselines import BASELINES
from npvae.training.fileio import atomic_write, write_text

ACC, BASE = "accuracy: ", "baseline: "           # column prefixes: the run's predictors, sklearn
LS = BASE + "LabelSpreading (knn 10)"
CLUSTER = ("nmi", "ari", "cluster_accuracy")


def build_rows(points: list[dict], cfgs, names: list[str], results: list[dict]) -> list[dict]:
    """One flat dict per run: run, the grid point's settings, seed, status, error, timings,
    held-out accuracy of each predictor ("accuracy: <name>"), NMI, ARI, Hungarian cluster
    accuracy, the baselines ("baseline: <name>") and the number of labeled training images."""
    rows = []
    for point, cfg, name, res in zip(points, cfgs, names, results):
        s = res.get("summary", {})
        row = {"run": name, **{k: _text(v) for k, v in point.items()}, "seed": cfg.seed,
               "status": res["status"], "error": res["error"],
               "fit_seconds": res.get("fit_seconds", math.nan), "seconds": res["seconds"],
               "epochs_completed": s.get("epochs_completed", math.nan)}
        row.update({ACC + k: v for k, v in s.get("heldout_accuracy", {}).items()})
        row.update({k: s.get(k, math.nan) for k in CLUSTER})
        row.update({BASE + k: res.get("baselines", {}).get(k, math.nan) for k in BASELINES})
        row["labeled_train_count"] = s.get("labeled_train_count", math.nan)
        rows.append(row)
    return rows


def methods(rows: list[dict]) -> list[str]:
    """Accuracy columns: every predictor any run has (first seen first), then the baselines."""
    preds = list(dict.fromkeys(k for r in rows for k in r if k.startswith(ACC)))
    return preds + [BASE + k for k in BASELINES]


def interval(values, level: float = 0.95) -> dict:
    """n, mean, std (ddof 1) and the two-sided Student-t interval of the mean of the finite
    values; std and the interval are nan for fewer than 2 values."""
    from scipy import stats

    v = np.asarray([x for x in values if isinstance(x, (int, float)) and math.isfinite(x)],
                   dtype=np.float64)
    n = v.size
    mean = float(v.mean()) if n else math.nan
    if n < 2:
        return {"n": n, "mean": mean, "std": math.nan, "lo": math.nan, "hi": math.nan}
    std = float(v.std(ddof=1))
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * std / math.sqrt(n)
    return {"n": n, "mean": mean, "std": std, "lo": mean - half, "hi": mean + half}


def settings(rows: list[dict], varied: list[str]) -> dict[str, list[dict]]:
    """Runs grouped by setting (the varied keys other than seed), in grid order."""
    keys = [k for k in varied if k != "seed"]
    groups: dict[str, list[dict]] = {}
    for r in rows:
        label = ", ".join(f"{k}={r[k]}" for k in keys) or "all runs"
        groups.setdefault(label, []).append(r)
    return groups


def setting_lines(rows: list[dict], varied: list[str]) -> list[str]:
    """Markdown table: per setting and method, runs, mean, std, 95% interval, and for the
    model's predictors in how many runs they beat LabelSpreading on the same split."""
    lines = ["| setting | method | runs | mean | std | 95% t-interval | runs above LabelSpreading |",
             "|---|---|---|---|---|---|---|"]
    for label, group in settings(rows, varied).items():
        ok = [r for r in group if r["status"] == "ok"]
        for m in methods(rows):
            st = interval([r.get(m, math.nan) for r in ok])
            above = ""
            if m.startswith(ACC):
                pairs = [(r.get(m, math.nan), r[LS]) for r in ok]
                pairs = [(a, b) for a, b in pairs if math.isfinite(a) and math.isfinite(b)]
                above = f"{sum(a > b for a, b in pairs)}/{len(pairs)}"
            lines.append(f"| {label} | {_short(m)} | {st['n']}/{len(group)} | {_f(st['mean'])} "
                         f"| {_f(st['std'])} | [{_f(st['lo'])}, {_f(st['hi'])}] | {above} |")
        for m in CLUSTER:
            st = interval([r[m] for r in ok])
            lines.append(f"| {label} | {m} | {st['n']}/{len(group)} | {_f(st['mean'])} | "
                         f"{_f(st['std'])} | [{_f(st['lo'])}, {_f(st['hi'])}] | |")
    return lines


def run_lines(rows: list[dict], varied: list[str]) -> list[str]:
    cols = [k for k in varied if k != "seed"] + ["seed", "status"] + methods(rows) + \
        list(CLUSTER) + ["fit_seconds"]
    lines = ["| run | " + " | ".join(_short(c) for c in cols) + " |",
             "|" + "---|" * (len(cols) + 1)]
    for r in rows:
        lines.append(f"| {r['run']} | " + " | ".join(_f(r.get(c, math.nan)) for c in cols) + " |")
    return lines


def write_all(out, rows: list[dict], varied: list[str], info: dict) -> dict[str, Path]:
    out = Path(out)
    files = {"sweep.csv": write_text(out / "sweep.csv", _csv(rows))}
    files["accuracy_by_seed.png"] = plot_accuracy_by_seed(rows, varied, out / "accuracy_by_seed.png")
    failed = [r for r in rows if r["status"] != "ok"]
    engine = info.get("engine") or f"{info['jobs']} at once x {info['threads']} thread(s)"
    text = [
        "# Sweep", "",
        f"**Command:** `{' '.join(info['command'])}`", "",
        *[f"**Resumed:** `{' '.join(c)}`" for c in info.get("resumed", [])],
        *([""] if info.get("resumed") else []),
        f"**Runs:** {len(rows)} ({len(rows) - len(failed)} finished), {engine}; one run folder "
        f"each beside this file.", "",
        "**Held-out:** each run's validation split. Predictors are the model's (the report's "
        "Held-out rows); baselines are scikit-learn on the same run's split, fit with its "
        "training labels only: LabelSpreading(kernel=knn, n_neighbors=10) on every training "
        "image, LogisticRegression(max_iter=1000) and 1-nearest-neighbour on the labeled "
        "training images.", "",
        "## Per setting (over seeds: mean, sample std, 95% Student-t interval of the mean)", "",
        *setting_lines(rows, varied), "",
        "![accuracy by seed](accuracy_by_seed.png)", "",
        "## Runs", "", *run_lines(rows, varied), "",
    ]
    if failed:
        text += ["## Failed runs", ""] + [f"- {r['run']}: {r['status']}: {r['error']}"
                                          for r in failed] + [""]
    files["SWEEP.md"] = write_text(out / "SWEEP.md", "\n".join(text))
    return files


def plot_accuracy_by_seed(rows: list[dict], varied: list[str], path) -> Path:
    """One panel per setting: held-out accuracy (y) per seed (x), one line per method
    (solid: the model's predictors; dashed: the baselines)."""
    from npvae.reporting.plots import plt

    groups = settings(rows, varied)
    cols = min(3, len(groups))
    nrow = -(-len(groups) // cols)
    fig, axes = plt.subplots(nrow, cols, figsize=(5.2 * cols, 3.8 * nrow), squeeze=False,
                             sharey=True)
    for ax, (label, group) in zip(axes.ravel(), groups.items()):
        group = sorted(group, key=lambda r: r["seed"])
        seeds = [r["seed"] for r in group]
        for m in methods(rows):
            acc = [r.get(m, math.nan) if r["status"] == "ok" else math.nan for r in group]
            ax.plot(seeds, acc, "-" if m.startswith(ACC) else "--",
                    marker="o" if m.startswith(ACC) else "s", label=_short(m))
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("seed")
        ax.set_xticks(seeds)
        ax.grid(alpha=0.3)
    for ax in axes.ravel()[len(groups):]:
        ax.set_visible(False)
    axes[0, 0].set_ylabel("held-out accuracy")
    axes[0, 0].legend(fontsize=7)
    fig.suptitle("Held-out (validation) accuracy per seed")
    fig.tight_layout()
    try:
        return atomic_write(path, lambda fh: fig.savefig(fh, dpi=110, format="png"))
    finally:
        plt.close(fig)


def progress_line(res: dict) -> str:
    """One line for a finished run: status, time, its predictors and LabelSpreading."""
    acc = res.get("summary", {}).get("heldout_accuracy", {})
    parts = [f"{k} {_f(v)}" for k, v in acc.items()]
    ls = res.get("baselines", {}).get(LS[len(BASE):])
    parts += [f"LabelSpreading {_f(ls)}"] if ls is not None else []
    error = res["error"] if len(res["error"]) < 120 else res["error"][:117] + "..."
    head = "ok" if res["status"] == "ok" else f"{res['status']} ({error})"
    return f"{head} in {res['seconds']:.1f} s" + (": " + ", ".join(parts) if parts else "")


def _csv(rows: list[dict]) -> str:
    cols = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: r.get(k, "") for k in cols})
    return buf.getvalue()


def _short(col: str) -> str:
    return col[len(ACC):] if col.startswith(ACC) else col[len(BASE):] if col.startswith(BASE) \
        else col


def _text(value) -> str:
    if isinstance(value, (tuple, list)):
        return " ".join(map(str, value))
    return "none" if value is None else str(value)


def _f(value) -> str:
    if isinstance(value, float):
        return "nan" if not math.isfinite(value) else f"{value:.3f}"
    return str(value)

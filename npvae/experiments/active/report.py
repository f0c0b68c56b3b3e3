"""What `python -m npvae.active` writes: ACTIVE.md, active.csv, curves.png, queries/*.png.

    summary(rows, strategies)      {strategy: {labels: interval() over seeds}}
    table_lines(rows, strategies)  Markdown: held-out accuracy per label count and strategy
    goal(rows, strategies)         does the best strategy reach random's accuracy at the
                                   largest label count with at most half the labels?
    write_all(out, rows, images, info)  the files (info also as active.json); images:
                                   {seed: x (N, 784)} for the query grids
    rerender(out)                  the files again from active.csv and active.json:
                                   `python -m npvae.active_report OUT` (no training)
    merge(out, sources)            one report from several runs of the same settings and
                                   seeds with different strategies (their first models must
                                   agree): `python -m npvae.active_report OUT --merge A B`

rows: one dict per (seed, strategy, round) from npvae.experiments.active.loop.run: labels, accuracy
(held-out), queried and revealed (arrays), seconds. The statistics over seeds are the
sweep's (mean, sample std, 95% Student-t interval; npvae/experiments/sweep/report.py).
"""
from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import sys
from pathlib import Path

import numpy as np

from npvae.experiments.sweep.report import _f, interval
from npvae.reporting.images import class_names
from npvae.reporting.plots import _save
from npvae.training.fileio import write_text


def summary(rows: list[dict], strategies) -> dict[str, dict[int, dict]]:
    """Per strategy and label count: interval() of the held-out accuracies over the seeds."""
    out = {}
    for s in strategies:
        by_count: dict[int, list] = {}
        for r in rows:
            if r["strategy"] == s:
                by_count.setdefault(r["labels"], []).append(r["accuracy"])
        out[s] = {n: interval(v) for n, v in sorted(by_count.items())}
    return out


def table_lines(rows: list[dict], strategies) -> list[str]:
    """| labels | strategy: mean (std) ... | over the seeds (n runs per cell)."""
    stats = summary(rows, strategies)
    counts = sorted({n for s in stats.values() for n in s})
    lines = ["| labels | " + " | ".join(strategies) + " |", "|---|" + "---|" * len(strategies)]
    for n in counts:
        cells = [stats[s].get(n) for s in strategies]
        lines.append(f"| {n} | " + " | ".join(
            "" if c is None else f"{_f(c['mean'])} ({_f(c['std'])}, n={c['n']})"
            for c in cells) + " |")
    return lines


def interval_lines(rows: list[dict], strategies) -> list[str]:
    """| strategy | labels | n | mean | std | 95% t-interval | (every point)."""
    lines = ["| strategy | labels | seeds | mean | std | 95% t-interval |", "|---|---|---|---|---|---|"]
    for s, by_count in summary(rows, strategies).items():
        for n, c in by_count.items():
            lines.append(f"| {s} | {n} | {c['n']} | {_f(c['mean'])} | {_f(c['std'])} | "
                         f"[{_f(c['lo'])}, {_f(c['hi'])}] |")
    return lines


def goal(rows: list[dict], strategies, baseline: str = "random") -> dict:
    """The target: the baseline's mean accuracy at its largest label count (100 by default).
    For every other strategy, the fewest labels at which its mean reaches the target (None if
    never); met = some strategy reaches it with at most half the baseline's labels."""
    stats = summary(rows, strategies)
    if baseline not in stats or not stats[baseline]:
        return {"met": None, "reason": f"no {baseline} curve to compare with"}
    top = max(stats[baseline])
    target = stats[baseline][top]["mean"]
    reach = {s: next((n for n, c in stats[s].items() if c["mean"] >= target), None)
             for s in strategies if s != baseline}
    # compared at the largest label count measured within half the budget (50 of 100; with
    # rounds that skip top // 2 itself, e.g. 10, 20, 30, the count below it)
    half = max((n for n in stats[baseline] if n <= top // 2), default=top // 2)
    best = max(reach, key=lambda s: stats[s].get(half, {"mean": -1})["mean"], default=None)
    met = any(n is not None and n <= half for n in reach.values())
    acc = {(r["seed"], r["strategy"], r["labels"]): r["accuracy"] for r in rows}
    pairs = [(acc.get((seed, best, half)), a) for (seed, s, n), a in acc.items()
             if s == baseline and n == top]
    pairs = [(a, b) for a, b in pairs if a is not None]
    return {"met": met, "target": target, "labels": top, "half": half, "reach": reach,
            "seeds_above": (sum(a >= b for a, b in pairs), len(pairs)), "best_at_half": best,
            "best_at_half_mean": stats[best].get(half, {}).get("mean") if best else None}


def plot_curves(rows: list[dict], strategies, path) -> Path:
    """Held-out accuracy against labels: per strategy the mean over seeds (line) and
    mean +- std (band)."""
    from npvae.reporting.plots import plt

    fig, ax = plt.subplots(figsize=(7, 4.6))
    for s, by_count in summary(rows, strategies).items():
        n = np.array(list(by_count))
        m = np.array([c["mean"] for c in by_count.values()])
        sd = np.nan_to_num(np.array([c["std"] for c in by_count.values()]))
        style = "--" if s == "random" else "-"
        line, = ax.plot(n, m, style, marker="o", ms=3, label=s)
        ax.fill_between(n, m - sd, m + sd, color=line.get_color(), alpha=0.12)
    ax.set_xlabel("labels revealed")
    ax.set_ylabel("held-out accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title("Held-out accuracy against labels (mean over seeds, band: +- std)")
    return _save(fig, path)


def plot_queries(x, rounds: list[dict], path, title: str, shape=None, classes=None) -> Path:
    """The images queried in each round (one row per round, round 0 = the first labels),
    each titled with its index and revealed label (? for a skipped image). x (N, D), drawn
    at shape (H, W, C) (images.image_of); classes: the labels' names (None: numbers)."""
    from npvae.reporting.images import image_of
    from npvae.reporting.plots import plt

    cols = max(len(r["queried"]) for r in rounds)
    fig, axes = plt.subplots(len(rounds), cols, figsize=(0.95 * cols, 1.1 * len(rounds)),
                             squeeze=False)
    for row, r in zip(axes, rounds):
        for ax, i, lab in zip(row, r["queried"], r["revealed"]):
            img = image_of(x[i], shape)
            if img.ndim == 2:
                ax.imshow(img, cmap="gray_r", vmin=0, vmax=1, aspect="auto" if len(img) == 1
                          else "equal")
            else:
                ax.imshow(np.clip(img, 0, 1))
            name = "?" if lab < 0 else (lab if classes is None else classes[lab])
            ax.set_title(f"#{i}: {name}", fontsize=6)
        for ax in row:
            ax.axis("off")
        row[0].text(-0.35, 0.5, f"round {r['round']}", transform=row[0].transAxes, fontsize=6,
                    ha="right", va="center")
    fig.suptitle(title, fontsize=8)
    return _save(fig, path)


def write_all(out, rows: list[dict], images: dict, info: dict) -> Path:
    """active.csv, curves.png, queries/<strategy>_seed<S>.png and ACTIVE.md; returns ACTIVE.md."""
    out = Path(out)
    strategies = info["strategies"]
    write_text(out / "active.json", json.dumps(
        {**info, "options": dataclasses.asdict(info["options"]),
         "cfg": info["cfg"].to_dict()}, indent=1))
    write_text(out / "active.csv", csv_text(rows))
    plot_curves(rows, strategies, out / "curves.png")
    grids = []
    for seed in info["seeds"]:
        for s in strategies:
            rounds = sorted((r for r in rows if r["seed"] == seed and r["strategy"] == s),
                            key=lambda r: r["round"])
            if rounds:
                rel = f"queries/{s}_seed{seed}.png"
                plot_queries(images[seed], rounds, out / rel, f"{s}, seed {seed}: queried images "
                             f"(#index: revealed label), one row per round",
                             info["cfg"].shape, class_names(info["cfg"]))
                grids.append(f"- [{s}, seed {seed}]({rel})")
    opt, cfg = info["options"], info["cfg"]
    g = goal(rows, strategies)
    mode = (f"retrain from scratch every round ({opt.init_epochs} epochs)" if opt.retrain else
            f"warm start: {opt.round_epochs} more epochs per round")
    text = [
        "# Active learning", "",
        f"**Command:** `{' '.join(info['command'])}`", "",
        f"**Settings:** model {cfg.model} (preset/config as in the command; {cfg.name}), "
        f"{opt.initial} first labels drawn at random from the training split, then "
        f"{opt.batch} per round up to {opt.budget}; first model {opt.init_epochs} epochs, "
        f"{mode}; labeled_per_batch {cfg.labeled_per_batch}. The first model of a seed is "
        f"shared by all strategies. Seeds {' '.join(map(str, info['seeds']))}; "
        f"{info['jobs']} worker(s) x {info['threads']} thread(s); {info['seconds']:.0f} s in "
        f"all.", "",
        "**Held-out:** each seed's validation split (the same images as `python -m npvae.run` "
        "with that seed), never queried and never labeled; accuracy of the run's first "
        f"predictor ({rows[0]['predictor'] if rows else '-'}).", "",
        "## Held-out accuracy: mean (std) over seeds", "", *table_lines(rows, strategies), "",
        "![curves](curves.png)", "", "## Goal", "", *_goal_lines(g), "",
        "## Every point: 95% Student-t interval of the mean", "",
        *interval_lines(rows, strategies), "",
        "## Images queried (one grid per seed and strategy)", "", *grids, "",
    ]
    if info.get("failed"):
        text += ["## Failed loops", ""] + [f"- {f}" for f in info["failed"]] + [""]
    return write_text(out / "ACTIVE.md", "\n".join(text))


def _goal_lines(g: dict) -> list[str]:
    if g["met"] is None:
        return [f"Not measured: {g['reason']}."]
    reach = ", ".join(f"{s} at {n if n is not None else 'never'}" for s, n in g["reach"].items())
    verdict = "**met**" if g["met"] else "**not met**"
    return [f"Target: random labeling's mean held-out accuracy at {g['labels']} labels, "
            f"{_f(g['target'])}. First label count whose mean reaches it: {reach}. Goal "
            f"(some strategy reaches it with at most {g['half']} labels): {verdict}. At "
            f"{g['half']} labels the best strategy is {g['best_at_half']} "
            f"({_f(g['best_at_half_mean'])}); per seed, it is at or above random's accuracy "
            f"at {g['labels']} labels in {g['seeds_above'][0]}/{g['seeds_above'][1]} seeds."]


def csv_text(rows: list[dict]) -> str:
    cols = ["seed", "strategy", "round", "labels", "predictor", "accuracy", "seconds",
            "queried", "revealed"]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({**r, "queried": " ".join(map(str, r["queried"])),
                    "revealed": " ".join(map(str, r["revealed"])),
                    "accuracy": r["accuracy"] if math.isfinite(r["accuracy"]) else "nan"})
    return buf.getvalue()



def read_rows(path) -> list[dict]:
    """The rows of an active.csv (queried and revealed as int arrays)."""
    with open(path, newline="") as fh:
        return [{"seed": int(r["seed"]), "strategy": r["strategy"], "round": int(r["round"]),
                 "labels": int(r["labels"]), "predictor": r["predictor"],
                 "accuracy": float(r["accuracy"]), "seconds": float(r["seconds"]),
                 "queried": np.array(r["queried"].split(), np.int64),
                 "revealed": np.array(r["revealed"].split(), np.int64)}
                for r in csv.DictReader(fh)]


def rerender(out) -> Path:
    """ACTIVE.md, curves.png and the grids again from OUT/active.csv and OUT/active.json."""
    from npvae.core.config import Config
    from npvae.training.data import load_data

    from .loop import Options

    out = Path(out)
    info = json.loads((out / "active.json").read_text())
    info["options"] = Options(**info["options"])
    info["cfg"] = Config.from_dict(info["cfg"]).validate()
    images = {s: load_data(info["cfg"].replace(seed=s))[0] for s in info["seeds"]}
    return write_all(out, read_rows(out / "active.csv"), images, info)


class MergeError(ValueError):
    """The runs cannot be merged; the message says why."""


def merge(out, sources) -> Path:
    """OUT/active.csv and active.json joining the runs in `sources` (folders written by
    `python -m npvae.active`), then the report (rerender). The runs must share the settings
    (cfg, options) and seeds, and each seed's round 0 (the shared first model: its first
    labels and held-out accuracy) must be the same in every run, so that their curves
    compare as if run together; a strategy found in two runs is taken from the first."""
    infos = [json.loads((Path(s) / "active.json").read_text()) for s in sources]
    rows_of = [read_rows(Path(s) / "active.csv") for s in sources]
    for key in ("seeds", "options", "cfg"):
        if any(i[key] != infos[0][key] for i in infos[1:]):
            raise MergeError(f"the runs differ in {key}; only runs of the same settings merge.")
    first: dict = {}
    for src, rows in zip(sources, rows_of):
        for r in rows:
            if r["round"] == 0:
                key = (r["queried"].tolist(), r["accuracy"])
                if first.setdefault(r["seed"], key) != key:
                    raise MergeError(f"seed {r['seed']}: the first model of {src} differs "
                                     f"(first labels or held-out accuracy).")
    strategies, rows = [], []
    for info, run_rows in zip(infos, rows_of):
        new = [s for s in info["strategies"] if s not in strategies]
        strategies += new
        rows += [r for r in run_rows if r["strategy"] in new]
    merged = {**infos[0], "strategies": strategies, "failed": sum((i["failed"] for i in infos), []),
              "seconds": sum(i["seconds"] for i in infos),
              "command": sum(([";"] * bool(k) + i["command"] for k, i in enumerate(infos)), [])}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "active.json", json.dumps(merged, indent=1))
    write_text(out / "active.csv", csv_text(rows))
    return rerender(out)


def main(argv=None) -> int:
    """`python -m npvae.active_report OUT [--merge SRC ...]`: re-draw OUT's report from its
    active.csv, or merge the folders SRC into OUT first."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--merge" in argv:
        at = argv.index("--merge")
        print(f"active: {merge(argv[0], argv[at + 1:])}")
    else:
        print(f"active: {rerender(argv[0])}")
    return 0

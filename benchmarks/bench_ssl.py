"""The ssl preset's fit time against the default run's, side by side on the same machine.

    python benchmarks/bench_ssl.py [--rounds 3] [--preset ssl]

Issue 10's goal: the preset's fit takes at most 1.5x the default's. Each round runs both
`python -m npvae.run` in fresh processes, one after the other (the order flips each round, so a
drift of the host's speed hits both alike), on the embedded digits, and reads `fit_seconds`
from each run.json. Prints every round, the medians and the median of the per-round ratios.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def fit_seconds(args: list[str], out: Path) -> float:
    cmd = [sys.executable, "-m", "npvae.run", *args, "--out", str(out), "--no-progress"]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return json.loads((out / "run.json").read_text())["fit_seconds"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--preset", default="ssl")
    a = ap.parse_args(argv)
    sides = {"default": [], a.preset: []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(a.rounds):
            order = list(sides) if r % 2 == 0 else list(sides)[::-1]
            for name in order:
                args = [] if name == "default" else ["--preset", name]
                sides[name].append(fit_seconds(args, Path(tmp) / f"{name}_{r}"))
            print(f"round {r + 1}: default {sides['default'][-1]:.1f} s, "
                  f"{a.preset} {sides[a.preset][-1]:.1f} s", flush=True)
    ratios = [s / d for s, d in zip(sides[a.preset], sides["default"])]
    print(f"fit seconds, median: default {statistics.median(sides['default']):.1f}, "
          f"{a.preset} {statistics.median(sides[a.preset]):.1f}")
    print(f"ratio {a.preset} / default: median {statistics.median(ratios):.2f} "
          f"(min {min(ratios):.2f}, max {max(ratios):.2f}); goal <= 1.5")
    return 0


if __name__ == "__main__":
    sys.exit(main())

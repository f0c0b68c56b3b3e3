"""How fast the app answers with 60,000 images (issue 24):

    python benchmarks/bench_app.py [--n 60000] [--repeats 3] [--pace 0.5]

It writes an .npz of N images without labels (the 5000 embedded digits repeated), starts
`python -m npvae.app --data` on it with a small model (the untrained model's latent means are
the 60,000 points), and measures in headless Chromium and through the API:

    first paint        page load until the 60,000-point WebGL scatter is drawn (median)
    points payload     the size of /api/points
    label persisted    POST /api/label: labels.csv rewritten atomically (fsync), per label
    next batch         GET /api/queue when the batch is used up (the query strategy runs on
                       5,000 random candidates)
    scatter refresh    fetching /api/points again and redrawing it in the page
    label in the page  a key press: the next image shown, and the label persisted (the
                       POST answered), both timed in the page; and the wait for the next
                       batch when the key used up the last image of one (labels given
                       every --pace seconds, a quick person: the app chooses the next batch
                       while the second half of a batch is labelled)
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.app_driver import (AppProcess, browser_missing, start_chromium,  # noqa: E402
                                   tiny_config, wait_for)


def timed(fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return (time.perf_counter() - t0) * 1000, out


def ms(values) -> str:
    return (f"median {statistics.median(values):.1f} ms, min {min(values):.1f}, "
            f"max {max(values):.1f} (n={len(values)})")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=60_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--strategy", default="typical")
    ap.add_argument("--pace", type=float, default=0.5, help="seconds between two labels")
    args = ap.parse_args(argv)
    from npvae.training.data import load_digits

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        x, _ = load_digits(None)
        reps = -(-args.n // len(x))
        images = np.rint(np.tile(x, (reps, 1))[:args.n] * 255).astype(np.uint8)
        np.savez(tmp / "big.npz", x=images.reshape(-1, 28, 28))
        t_start, app = timed(lambda: AppProcess(
            "--config", str(tiny_config(tmp, None)), "--data", str(tmp / "big.npz"), "--out",
            str(tmp / "run"), "--strategy", args.strategy, cwd=tmp))
        print(f"app start ({args.n} images, first outputs): {t_start / 1000:.1f} s")
        try:
            measure(app, args)
        finally:
            app.stop()
    return 0


def measure(app, args) -> None:
    t, (status, points) = timed(lambda: app.get("api/points"))
    size = len(__import__("json").dumps(points)) / 1e6
    print(f"points payload: {size:.1f} MB, first request {t:.0f} ms")
    t, (_, queue) = timed(lambda: app.get("api/queue"))
    print(f"first batch ({args.strategy}): {t:.0f} ms")
    persist, batches = [], []
    for _ in range(3):
        for item in queue["items"]:
            t, (status, _) = timed(lambda: app.post("api/label", {"index": item["index"],
                                                                  "label": item["guess"]}))
            assert status == 200
            persist.append(t)
            time.sleep(args.pace)
        t, (_, queue) = timed(lambda: app.get("api/queue"))
        batches.append(t)
    print(f"label persisted (POST /api/label, atomic labels.csv): {ms(persist)}")
    print(f"next batch (GET /api/queue, {args.strategy} over {args.n} images): {ms(batches)}")
    why = browser_missing()
    if why:
        print(f"browser figures skipped: {why}")
        return
    driver = start_chromium(Path(tempfile.mkdtemp()) / "profile")
    try:
        paints, refresh = [], []
        for _ in range(args.repeats):
            driver.get(app.url)
            wait_for(lambda: driver.execute_script("return window.npvaeApp && "
                                                   "window.npvaeApp.painted"), 120, 0.05,
                     "the first paint")
            paints.append(driver.execute_script("return window.npvaeApp.painted"))
        for _ in range(args.repeats):
            refresh.append(driver.execute_async_script(
                "const done = arguments[arguments.length - 1], t = performance.now();"
                "api('/api/points').then((p) => { window.npvaeApp.points = p;"
                " return drawScatter(); }).then(() => done(performance.now() - t));"))
        print(f"first paint (navigation start to the scatter drawn): {ms(paints)}")
        print(f"scatter refresh (fetch /api/points + Plotly.react): {ms(refresh)}")
        shown, saved, batch = [], [], []
        for _ in range(2 * 12):
            t = driver.execute_async_script(
                "const done = arguments[arguments.length - 1], S = window.npvaeApp,"
                " last = S.queue.length === 1, t = performance.now();"
                "act('label', S.queue[S.focus].guess); const shown = performance.now() - t;"
                "S.pending.then(() => done([shown, performance.now() - t, last]));")
            time.sleep(args.pace)
            shown.append(t[0])
            (batch if t[2] else saved).append(t[1])
        print(f"label in the page, next image shown: {ms(shown)}")
        print(f"label in the page, persisted (POST answered): {ms(saved)}")
        print(f"label in the page that used up a batch, until the next batch is shown: "
              f"{ms(batch)}")
        hover = driver.execute_async_script(
            "const done = arguments[arguments.length - 1], t = performance.now();"
            "showHover(123).then(() => done(performance.now() - t));")
        print(f"hover panel (GET /api/info, first time): {hover:.1f} ms")
    finally:
        driver.quit()


if __name__ == "__main__":
    sys.exit(main())

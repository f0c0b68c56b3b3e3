"""Screenshots of the app's main views into docs/img/ (docs/app.md shows them):

    python benchmarks/app_screenshots.py [--out docs/img]

It makes a run of the ssl preset's model on 2000 of the embedded digits (40 epochs a round)
in a temporary folder, plays
the person (labels 4 queue batches with the data's own labels through the API), trains a
round, makes a second run with `python -m npvae.run` for the Compare view, and drives the
page in headless Chromium: app_label.png (scatter coloured by predicted label, the hover
panel, the queue), app_uncertainty.png, app_selection.png (a box of the scatter selected,
inspected and made the queue), app_components.png, app_training.png (a round in progress),
app_compare.png."""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.app_driver import (AppProcess, browser_missing, start_chromium,  # noqa: E402
                                   wait_for)
from npvae.core.config import Config  # noqa: E402
from npvae.training import presets  # noqa: E402
from npvae.training.tomlfile import write_toml  # noqa: E402


def ssl_config(folder: Path, epochs: int = 40) -> Path:
    """The ssl preset on 2000 images with `epochs` epochs, as a TOML file."""
    values = {**presets.load("ssl"), "num_samples": 2000, "epochs": epochs, "patience": epochs}
    path = folder / "ssl2000.toml"
    path.write_text(write_toml(Config.from_dict(values).validate()))
    return path


def label_batches(app, batches: int) -> int:
    """Label `batches` queue batches with the data's own labels (the simulated person)."""
    truth = app.get("api/points")[1]["truth"]
    done = 0
    for _ in range(batches):
        for item in app.get("api/queue")[1]["items"]:
            app.post("api/label", {"index": item["index"], "label": truth[item["index"]]})
            done += 1
    return done


def round_done(app, timeout=600):
    return wait_for(lambda: (p := app.get("api/progress")[1])["status"] == "done" and p,
                    timeout, 0.5, "the round to end")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "docs" / "img"))
    args = ap.parse_args(argv)
    if browser_missing():
        print(f"cannot take screenshots: {browser_missing()}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cfg = ssl_config(tmp)
        subprocess.run([sys.executable, "-m", "npvae.run", "--config", str(cfg), "--epochs",
                        "5", "--out", str(tmp / "runs" / "baseline_50_labels"),
                        "--no-progress"], check=True, capture_output=True)
        app = AppProcess("--config", str(cfg), "--out", str(tmp / "runs" / "digits_app"),
                         "--round-epochs", "40", cwd=tmp)
        driver = None
        try:
            print(f"labelled {label_batches(app, 4)} images", file=sys.stderr)
            app.post("api/train", {"epochs": 40})
            round_done(app)
            driver = start_chromium(tmp / "profile", 1500, 900)
            shoot(driver, app, out)
        finally:
            if driver is not None:
                driver.quit()
            app.stop()
    return 0


def shoot(driver, app, out: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    def by_id(name):
        return driver.find_element(By.ID, name)

    driver.get(app.url)
    wait_for(lambda: by_id("scatter").get_attribute("data-version") == "1", 60, 0.2, "paint")
    Select(by_id("colour")).select_by_value("pred")
    driver.execute_script("document.getElementById('scatter')"
                          ".emit('plotly_hover', {points: [{pointIndex: 7}]})")
    wait_for(lambda: by_id("hover").is_displayed(), 30, 0.2, "the hover panel")
    time.sleep(1.0)
    driver.save_screenshot(str(out / "app_label.png"))
    Select(by_id("colour")).select_by_value("unc")
    time.sleep(1.0)
    driver.save_screenshot(str(out / "app_uncertainty.png"))
    Select(by_id("colour")).select_by_value("pred")
    driver.execute_script(              # what plotly sends for a box around a point
        "const p = window.npvaeApp.points, x0 = p.x[7], y0 = p.y[7], pts = [];"
        "for (let i = 0; i < p.n; i++) if (Math.abs(p.x[i] - x0) < 0.3 &&"
        " Math.abs(p.y[i] - y0) < 0.3) pts.push({pointIndex: i});"
        "document.getElementById('hover').hidden = true;"
        "document.getElementById('scatter').emit('plotly_selected', {points: pts})")
    wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, "#sel-grid .thumb"), 30, 0.2,
             "the selection")
    by_id("btn-sel-queue").click()
    driver.execute_script("window.scrollTo(0, 0)")
    time.sleep(1.0)
    driver.save_screenshot(str(out / "app_selection.png"))
    by_id("tab-components").click()
    wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, "#comp-grid .comp"), 30, 0.2,
             "the components")
    time.sleep(0.5)
    driver.save_screenshot(str(out / "app_components.png"))
    by_id("tab-main").click()
    Select(by_id("colour")).select_by_value("known")
    epochs = by_id("epochs")
    epochs.clear()
    epochs.send_keys("200")
    by_id("btn-train").click()
    wait_for(lambda: int(by_id("status").get_attribute("data-epoch") or 0) >= 45, 300, 0.3,
             "a few epochs of the round")
    driver.save_screenshot(str(out / "app_training.png"))
    by_id("btn-stop").click()
    wait_for(lambda: by_id("status").get_attribute("data-status") == "stopped", 120, 0.3,
             "the round to stop")
    by_id("tab-compare").click()
    wait_for(lambda: len(driver.find_elements(By.CSS_SELECTOR, "#runs tbody tr")) == 2, 30,
             0.2, "the runs table")
    driver.save_screenshot(str(out / "app_compare.png"))
    for name in ("app_label", "app_uncertainty", "app_selection", "app_components",
                 "app_training", "app_compare"):
        print(out / f"{name}.png")


if __name__ == "__main__":
    sys.exit(main())

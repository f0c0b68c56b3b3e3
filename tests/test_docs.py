"""docs/math.md cannot drift from the code silently.

Every reference `npvae/<file>.py:<name>` (or `examples/<file>.py:<name>`) in the document
must name a file that exists and an attribute that the imported module has (dotted names
such as `Layout.decay_mask` are followed attribute by attribute). The document must keep
many such references, derive every backward pass in npvae/layers.py, and keep its math
delimiters balanced so that GitHub renders it.
"""
from __future__ import annotations

import importlib
import importlib.util
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "math.md"
REF = re.compile(r"`((?:npvae|examples)/[\w/]+\.py):([A-Za-z_][\w.]*)`")


def references() -> list[tuple[str, str]]:
    return sorted(set(REF.findall(DOC.read_text())))


def load(path: str):
    """Import a referenced file: npvae modules as part of the package, examples by path."""
    if path.startswith("npvae/"):
        return importlib.import_module(path[:-3].replace("/", "."))
    file = ROOT / path
    saved = list(sys.path)                        # examples add their folder to sys.path
    try:
        sys.path.insert(0, str(file.parent))
        spec = importlib.util.spec_from_file_location(f"_doc_{file.stem}", file)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path[:] = saved
    return module


def test_there_are_many_references():
    refs = references()
    assert len(refs) >= 40, f"only {len(refs)} code references in docs/math.md"
    assert len({p for p, _ in refs}) >= 6, "references should span the package's files"


@pytest.mark.parametrize("path,name", references(), ids=[f"{p}:{n}" for p, n in references()])
def test_reference_exists(path, name):
    assert (ROOT / path).is_file(), f"docs/math.md names {path}, which does not exist"
    obj = load(path)
    for part in name.split("."):
        assert hasattr(obj, part), f"docs/math.md names {path}:{name}, but {part!r} is missing"
        obj = getattr(obj, part)


def test_every_layer_backward_is_derived():
    """A new backward pass in npvae/layers.py needs its derivation in the document."""
    from npvae import layers
    backward = {n for n in vars(layers) if n.endswith("_backward")}
    named = {name for path, name in references() if path == "npvae/layers.py"}
    assert backward, "no *_backward functions found in npvae/layers.py"
    assert backward <= named, f"not derived in docs/math.md: {sorted(backward - named)}"


def test_math_delimiters_are_balanced():
    text = DOC.read_text()
    assert text.count("$$") % 2 == 0, "an unclosed $$ display block"
    for number, line in enumerate(text.splitlines(), 1):
        inline = line.replace("$$", "").replace(r"\$", "")
        assert inline.count("$") % 2 == 0, f"line {number}: unbalanced inline $...$"

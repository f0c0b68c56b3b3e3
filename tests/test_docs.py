"""docs/math.md cannot drift from the code silently.

- Every reference `npvae/<file>.py:<name>` (or `examples/<file>.py:<name>`) names a file that
  exists and an attribute the imported module has (dotted names are followed).
- A reference must point at the right function: in a sentence that cites functions, every
  other code name in backticks (`dhz`, `g["pi_logits"]`, `np.dot`) must occur in the source
  of one of the functions that sentence cites; the index (last table) may only list a
  function under a section whose text cites it (the index is section 13).
- Every "section N.M" the page, the examples and the README point to exists.
- Every letter, Greek letter and named operator used in a formula is in the symbol table of
  section 0, and each appears in only one of its rows.
- The math renders on GitHub: balanced delimiters, only LaTeX commands known to render there
  (checked once with MathJax 3, which GitHub uses), no `|` inside math in a table row, and
  inline `$` placed where GitHub's parser accepts it.
- The blocks that scripts write (the graph, the worked example, the exercises) are exactly
  what the scripts print now, and every number in the worked example's prose is one the
  script prints.

These checks read the whole page, so they apply to sections added later as well.
"""
from __future__ import annotations

import importlib
import importlib.util
import inspect
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "math.md"
REF = re.compile(r"`((?:npvae|examples)/[\w/]+\.py):([A-Za-z_][\w.]*)`")
GREEK = ("alpha beta gamma Gamma delta Delta epsilon varepsilon zeta eta theta Theta vartheta "
         "iota kappa lambda Lambda mu nu xi Xi pi Pi varpi rho varrho sigma Sigma varsigma tau "
         "upsilon Upsilon phi Phi varphi chi psi Psi omega Omega").split()
# LaTeX commands this page may use: each checked to render with MathJax 3 (GitHub's renderer).
# A new one is fine once it renders on GitHub; add it here then.
ALLOWED = set(GREEK) | set(
    "Big Vert bar big bigg bot cdot cdots dots exp frac hat in infty ldots le leftarrow ge "
    "log lVert lvert mathbb mathbf mathcal mathrel mathrm max min odot operatorname overline "
    "overset partial prod qquad quad rVert rvert sqrt sum tanh text textstyle to top "
    "underbrace nabla approx times neq sim mid Rightarrow tilde int notin pm tfrac".split())


# ------------------------------------------------------------------------------ helpers
def text() -> str:
    return DOC.read_text()


def prose(doc: str) -> str:
    """The page without fenced code blocks and HTML comments (their content is not prose)."""
    doc = re.sub(r"^```.*?^```", "", doc, flags=re.S | re.M)
    return re.sub(r"<!--.*?-->", "", doc, flags=re.S)


def math_spans(doc: str) -> list[tuple[bool, str]]:
    """(display?, source) of every formula outside code blocks and inline code."""
    body = re.sub(r"`[^`\n]*`", "", prose(doc))
    spans = [(True, m) for m in re.findall(r"\$\$(.*?)\$\$", body, flags=re.S)]
    body = re.sub(r"\$\$.*?\$\$", "", body, flags=re.S)
    spans += [(False, m) for m in re.findall(r"\$([^$\n]+)\$", body)]
    return spans


def sections(doc: str) -> dict[str, str]:
    """Heading number ('8', '8.5', '12.1') -> the text up to the next heading of any level.
    Headings are '## N.' and '### N.M', or bold '**N.M ' paragraphs (the exercises)."""
    marks = [(m.group(1), m.start()) for m in
             re.finditer(r"^(?:#{2,3} |\*\*)(\d+(?:\.\d+)?)[. ]", doc, flags=re.M)]
    out = {}
    for (number, start), nxt in zip(marks, marks[1:] + [(None, len(doc))]):
        out[number] = doc[start:nxt[1]]
    return out


def top_section(doc: str, number: str) -> str:
    """Section N with all its subsections."""
    m = re.search(rf"^## {number}\. .*?(?=^## \d+\. |\Z)", doc, flags=re.S | re.M)
    assert m, f"docs/math.md has no section {number}"
    return m.group(0)


def references(doc: str | None = None) -> list[tuple[str, str]]:
    return sorted(set(REF.findall(text() if doc is None else doc)))


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


def resolve(path: str, name: str):
    obj = load(path)
    for part in name.split("."):
        obj = getattr(obj, part)
    return obj


def source(path: str, name: str) -> str:
    """The source of a cited function or class; of the whole module for anything else."""
    obj = resolve(path, name)
    try:
        return inspect.getsource(obj)
    except TypeError:
        return (ROOT / path).read_text()


# ------------------------------------------------------------------------- references
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
    """A new backward pass in npvae/core/layers.py needs its derivation in the document."""
    from npvae.core import layers
    backward = {n for n in vars(layers) if n.endswith("_backward")}
    named = {name for path, name in references() if path == "npvae/core/layers.py"}
    assert backward, "no *_backward functions found in npvae/core/layers.py"
    assert backward <= named, f"not derived in docs/math.md: {sorted(backward - named)}"


def cited_sentences(doc: str) -> list[tuple[str, list[tuple[str, str]], list[str]]]:
    """(sentence, its references, the other backticked code names in it) for every sentence
    of the prose (outside tables and math) that cites at least one function."""
    out = []
    for para in re.split(r"\n\s*\n", prose(doc)):
        if para.lstrip().startswith("|"):
            continue                                  # tables: checked by the index test
        para = re.sub(r"\$\$.*?\$\$|\$[^$\n]+\$", "MATH", para, flags=re.S).replace("\n", " ")
        for sentence in re.split(r"(?<=[.:;])\s+(?=[A-Z(`\[])", para):
            refs = REF.findall(sentence)
            spans = re.findall(r"`([^`]+)`", sentence)
            names = [s for s in spans if not REF.fullmatch(f"`{s}`") and "/" not in s
                     and " " not in s and "..." not in s and not s.startswith("-")]
            if refs and names:
                out.append((sentence.strip(), refs, names))
    return out


def test_code_names_next_to_a_reference_are_in_the_cited_function():
    """`npvae/core/model.py:backward` (`dhz`) fails: dhz lives in decoder_backward. This catches a
    citation of the wrong function whenever the sentence names something of the code."""
    problems, checked = [], 0
    for sentence, refs, names in cited_sentences(text()):
        sources = [source(p, n) for p, n in refs]
        for name in names:
            checked += 1
            if not any(name in s for s in sources):
                cited = ", ".join(f"{p}:{n}" for p, n in refs)
                problems.append(f"`{name}` is not in {cited}: {sentence[:160]}")
    assert checked >= 10, f"only {checked} code names checked; the test looks broken"
    assert not problems, "\n".join(problems)


def test_the_index_lists_functions_under_sections_that_cite_them():
    doc = text()
    index = top_section(doc, "13")
    secs = sections(doc)
    rows = [r for r in index.splitlines() if r.startswith("| ") and REF.search(r)]
    assert len(rows) >= 15
    for row in rows:
        number = row.split("|")[2].strip()
        body = secs[number] if "." in number else top_section(doc, number)
        for path, name in REF.findall(row):
            assert f"`{path}:{name}`" in body, \
                f"the index lists {path}:{name} under section {number}, which does not cite it"


def section_numbers_cited(body: str) -> set[str]:
    """'section 8.5', 'sections 8.9 and 8.11', 'sections 1 to 4', '(8.1, 8.2)'."""
    found = set()
    for m in re.finditer(r"[Ss]ections?\s+(\d+(?:\.\d+)?(?:(?:,\s*|\s+(?:and|to)\s+)\d+(?:\.\d+)?)*)",
                         body):
        found |= set(re.findall(r"\d+(?:\.\d+)?", m.group(1)))
    for m in re.finditer(r"\(([1-9]\d?\.\d\d?(?:,\s*[1-9]\d?\.\d\d?)*)\)", body):
        found |= set(re.findall(r"\d+\.\d+", m.group(1)))
    return found


def test_section_references_exist():
    doc = text()
    numbers = set(sections(doc))
    missing = sorted(section_numbers_cited(prose(doc)) - numbers)
    assert not missing, f"docs/math.md points to sections that do not exist: {missing}"
    pages = [p for p in sorted((ROOT / "docs").glob("*.md")) if p != DOC]
    for path in [ROOT / "README.md", *pages, *sorted((ROOT / "examples").glob("*.py"))]:
        for m in re.finditer(r"math\.md[`)\]]*,?\s+sections?\s+(\d+(?:\.\d+)?)", path.read_text()):
            assert m.group(1) in numbers, f"{path.name} points to math.md section {m.group(1)}"


def test_contents_links_reach_headings():
    """GitHub's anchors: lower case, punctuation dropped, spaces to '-'."""
    doc = text()
    anchors = {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
               for h in re.findall(r"^#{1,6} (.*)$", prose(doc), flags=re.M)}
    links = re.findall(r"\]\(#([^)]+)\)", doc)
    assert len(links) >= 10
    assert not sorted(set(links) - anchors), f"links to no heading: {sorted(set(links) - anchors)}"


# -------------------------------------------------------------------------- symbols
def tokens(tex: str) -> set[str]:
    """The symbols of a formula: single letters, Greek letters, \\mathbb/\\mathcal/\\mathbf
    letters, names inside \\mathrm/\\operatorname, and the transpose."""
    tex = re.sub(r"\\text\s*\{[^{}]*\}", " ", tex)
    found = set()
    for m in re.finditer(r"\\(mathrm|operatorname)\s*(?:\{([^{}]*)\}|([A-Za-z]))", tex):
        found |= {f"name {w}" for w in re.split(r"[^A-Za-z]+", m.group(2) or m.group(3)) if w}
    tex = re.sub(r"\\(mathrm|operatorname)\s*(?:\{[^{}]*\}|[A-Za-z])", " ", tex)
    for m in re.finditer(r"\\(mathbb|mathcal|mathbf)\s*\{?\s*([A-Za-z0-9])", tex):
        found.add(f"\\{m.group(1)} {m.group(2)}")
    tex = re.sub(r"\\(mathbb|mathcal|mathbf)\s*\{?\s*[A-Za-z0-9]\}?", " ", tex)
    for m in re.finditer(r"\\([A-Za-z]+)", tex):
        if m.group(1) in GREEK or m.group(1) == "top":
            found.add("\\" + m.group(1))
    tex = re.sub(r"\\[A-Za-z]+", " ", tex)
    return found | set(re.findall(r"[A-Za-z]", tex))


def symbol_table(doc: str) -> list[str]:
    m = re.search(r"<!-- symbols:begin -->(.*?)<!-- symbols:end -->", doc, flags=re.S)
    assert m, "docs/math.md lost its symbol table (<!-- symbols:begin --> ... end)"
    return [row for row in m.group(1).strip().splitlines()[2:] if row.startswith("|")]


def test_every_symbol_is_in_the_table():
    doc = text()
    rows = symbol_table(doc)
    assert len(rows) >= 60
    listed = set()
    for row in rows:
        cell = row.split("|")[1]
        listed |= {t for _, tex in math_spans(cell) for t in tokens(tex)}
    used = {t for _, tex in math_spans(doc) for t in tokens(tex)}
    missing = sorted(used - listed)
    assert not missing, ("symbols used in docs/math.md but not in its symbol table (section 0; "
                         f"add a row with shape and meaning): {missing}")


def plain_symbols(cell: str) -> set[str]:
    """The symbols a table cell lists undecorated: 'W, b' gives W and b; 'W_0', 'hat p',
    'h^z' give none (they are symbols of their own, with rows of their own)."""
    found = set()
    for _, tex in math_spans(cell):
        tex = re.sub(r"\\(hat|bar|tilde|overline)\s*(\{[^{}]*\}|\\?[A-Za-z]+)", " ", tex)
        group = r"\{(?:[^{}]|\{[^{}]*\})*\}"                     # {...}, one level nested
        tex = re.sub(rf"(\\[A-Za-z]+\s*({group})?|[A-Za-z0-9])\s*([_^]({group}|\\?[A-Za-z0-9]+))+",
                     " ", tex)
        found |= tokens(tex)
    return found


def test_no_symbol_has_two_rows():
    rows = [row.split("|")[1] for row in symbol_table(text())]
    cells = [re.sub(r"\s+", "", cell) for cell in rows]
    assert len(cells) == len(set(cells)), "a symbol cell appears twice in the symbol table"
    owner: dict[str, str] = {}
    for cell in rows:
        for tok in plain_symbols(cell):
            assert tok not in owner, f"{tok} has two rows in the symbol table:{owner[tok]}and{cell}"
            owner[tok] = cell
    assert {"c", "b", "e", "h", "p", "\\epsilon", "\\delta"} <= set(owner)


def test_the_old_collisions_are_gone():
    """The symbols that once meant two things each (issue 11) keep one meaning."""
    spans = " ".join(tex for _, tex in math_spans(text()))
    assert r"\varepsilon" not in spans, "the clip floor is written 10^{-8}; epsilon is the noise"
    assert not re.search(r"\\mathrm\{Dir\}", spans), "the Dirichlet term is L_dir"
    assert not re.search(r"W_\{?\\(top|bot)\b", spans), "the halves of W_0 are W_top, W_bot"
    assert not re.search(r"(?<![\\\w])e\^", spans), "exp() is written out; e is the embeddings"
    assert not re.search(r"\\delta_\{", spans), "the Kronecker delta is an Iverson bracket"


# ---------------------------------------------------------------------- GitHub math
def test_math_delimiters_are_balanced():
    doc = prose(text())
    assert doc.count("$$") % 2 == 0, "an unclosed $$ display block"
    for number, line in enumerate(doc.splitlines(), 1):
        inline = re.sub(r"`[^`]*`", "", line).replace("$$", "").replace(r"\$", "")
        assert inline.count("$") % 2 == 0, f"line {number}: unbalanced inline $...$"


def test_only_commands_that_render_on_github():
    used = {c for _, tex in math_spans(text()) for c in re.findall(r"\\([A-Za-z]+)", tex)}
    unknown = sorted(used - ALLOWED)
    assert not unknown, f"LaTeX commands not known to render on GitHub: {unknown}"
    assert r"\begin" not in text(), "environments (align, ...) render unreliably on GitHub"


def test_inline_math_is_placed_where_github_finds_it():
    for line in prose(text()).splitlines():
        line = re.sub(r"`[^`]*`", "", line).replace("$$", "")
        for m in re.finditer(r"\$([^$]+)\$", line):
            inner, after = m.group(1), line[m.end():m.end() + 1]
            before = line[m.start() - 1:m.start()] if m.start() else ""
            assert inner == inner.strip(), f"space inside the $ of ${inner}$"
            assert not before.isalnum(), f"${inner}$ follows {before!r}: not rendered"
            assert not after.isalnum(), f"${inner}$ is followed by {after!r}: not rendered"
        if line.startswith("|"):
            for cell_math in re.findall(r"\$([^$]+)\$", line):
                assert "|" not in cell_math, f"a | inside math splits the table row: {line}"


# ------------------------------------------------------------------- generated blocks
def block(name: str) -> str:
    m = re.search(rf"<!-- {name}:begin -->\n(.*?)\n<!-- {name}:end -->", text(), flags=re.S)
    assert m, f"docs/math.md has no {name} block"
    return m.group(1)


@pytest.mark.parametrize("script,name,make", [
    ("computational_graph.py", "graph", lambda m: m.markdown()),
    ("worked_backward.py", "worked", lambda m: m.markdown()),
    ("gradient_check.py", "exercises", lambda m: m._breaks.exercises_markdown()),
])
def test_generated_blocks_are_current(script, name, make):
    """Regenerate with `python examples/<script> --update docs/math.md`."""
    assert block(name) == make(load(f"examples/{script}")), \
        f"the {name} block of docs/math.md is stale: run python examples/{script} --update docs/math.md"


def test_worked_example_prose_uses_the_printed_numbers():
    """Every number with 4 decimals in section 9's text is one the script prints."""
    printed = block("worked")
    body = prose(top_section(text(), "9"))
    numbers = set(re.findall(r"\d+\.\d{4}", body))
    assert len(numbers) >= 25, f"only {len(numbers)} worked numbers in section 9's text"
    missing = sorted(n for n in numbers if n not in printed)
    assert not missing, f"section 9 quotes numbers the script does not print: {missing}"

"""The docs say where things are, and they stay true: links resolve, the README's map is the layout.

Files and headings only, no server: a moved module or a renamed heading fails here, not in a reader's
browser. Links leaving the repository (the routine in ``../shared/``) are not the repository's to hold.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = [README, *sorted((ROOT / "docs").glob("*.md")), ROOT / "bench" / "README.md", ROOT / "profiles" / "README.md"]

FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.M | re.S)
CODE_SPAN = re.compile(r"`([^`\n]+)`")
LINK = re.compile(r"\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)
HTML_ANCHOR = re.compile(r"<a\s+(?:name|id)=\"([^\"]+)\"", re.I)
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
# A path named in code, from the repository's root: `adapter/fhir/search.py`, `profiles/`.
ROOTS = ("adapter", "tests", "bench", "mappings", "profiles", "docs", "hapi", "ops")
ROOT_PATH = re.compile(rf"^(?:{'|'.join(ROOTS)})/[\w./-]*$")
MODULE = re.compile(r"(?<![\w./-])adapter(?:\.[A-Za-z_]\w*)+")


def _prose(text: str) -> str:
    """The text without fenced code blocks (a link or heading in one is an example), lines kept."""
    return FENCE.sub(lambda block: "\n" * block.group(0).count("\n"), text)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its text, lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = text.replace("`", "").strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(doc: Path) -> set[str]:
    """Every anchor a Markdown file offers: each heading's slug (repeats numbered -1, -2 ...) and HTML anchors."""
    text = _prose(doc.read_text(encoding="utf-8"))
    found: set[str] = set(HTML_ANCHOR.findall(text))
    seen: dict[str, int] = {}
    for heading in HEADING.findall(text):
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(doc: Path) -> Iterator[tuple[int, str]]:
    text = doc.read_text(encoding="utf-8")
    prose = _prose(text)
    for match in LINK.finditer(CODE_SPAN.sub(lambda m: "x" * len(m.group(0)), prose)):
        yield prose.count("\n", 0, match.start()) + 1, match.group(1)


def _name(doc: Path) -> str:
    return str(doc.relative_to(ROOT))


@pytest.mark.parametrize("doc", DOCS, ids=_name)
def test_every_relative_link_resolves(doc: Path) -> None:
    broken = []
    for line, target in links(doc):
        if SCHEME.match(target):
            continue  # https:, mailto:
        path_part, _, anchor = target.partition("#")
        path = (doc.parent / unquote(path_part)).resolve() if path_part else doc
        if not path.is_relative_to(ROOT):
            continue
        if not path.exists():
            broken.append(f"{_name(doc)}:{line}: {target} (no such file)")
        elif anchor and path.suffix == ".md" and unquote(anchor) not in anchors(path):
            broken.append(f"{_name(doc)}:{line}: {target} (no such heading in {_name(path)})")
    assert not broken, "\n".join(broken)


@pytest.mark.parametrize("doc", DOCS, ids=_name)
def test_every_path_and_module_named_in_code_exists(doc: Path) -> None:
    """`adapter/...`, `tests/...` and `adapter.x.y` in the docs name what is there (a module, or a name it defines)."""
    missing = []
    for span in CODE_SPAN.findall(doc.read_text(encoding="utf-8")):
        for word in span.split():
            word = word.rstrip(".,;:)")
            if ROOT_PATH.match(word) and not (ROOT / word).exists() and not _output(word):
                missing.append(word)
        missing += [name for name in MODULE.findall(span) if not _defined(name)]
    assert not missing, f"{_name(doc)} names what does not exist: {sorted(set(missing))}"


def _output(path: str) -> bool:
    """What a run writes (``bench/results/``), ignored by git: named before it exists."""
    ignored = (ROOT / ".gitignore").read_text(encoding="utf-8").split()
    return any(path.startswith(entry) for entry in ignored if "/" in entry.rstrip("/") and not entry.startswith("*"))


def _defined(dotted: str) -> bool:
    """``adapter.a.b`` is a module or package, or ``b`` is defined at the top of module ``adapter.a``."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        base = ROOT.joinpath(*parts[:cut])
        module = base / "__init__.py" if base.is_dir() else base.with_suffix(".py")
        if module.exists():
            rest = parts[cut:]
            return not rest or (len(rest) == 1 and rest[0] in _top_level_names(module))
    return False


def _top_level_names(module: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.parse(module.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {t.id for t in targets if isinstance(t, ast.Name)}
    return names


def test_every_doc_is_linked_from_the_readme() -> None:
    linked = {(README.parent / target.partition("#")[0]).resolve() for _, target in links(README)}
    assert not [_name(d) for d in DOCS if d != README and d.resolve() not in linked]


# ---------------------------------------------------------------- the README's map of the packages


def map_rows() -> list[tuple[list[str], list[str]]]:
    """The rows of the README's "Where things are" table: (paths of the first cell, code of the others)."""
    section = README.read_text(encoding="utf-8").split("\n## Where things are\n", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        if line.startswith("| `"):
            first, *rest = [cell.strip() for cell in line.strip().strip("|").split("|")]
            rows.append((CODE_SPAN.findall(first), CODE_SPAN.findall(" ".join(rest))))
    assert rows, "README.md: no table under '## Where things are'"
    return rows


def mapped_paths() -> list[str]:
    """Every path the map names. In a row's description a path is the row's own (`review/` under
    `adapter/workflow/`, `core.py`) unless it starts from the root (`mappings/codes.yaml`)."""
    paths = []
    for names, code in map_rows():
        paths += names
        home = names[0] if names[0].endswith("/") else ""
        for word in code:
            if " " in word or word.startswith("/") or not ("/" in word or word.endswith(".py")):
                continue  # `/notify`, `mmr-adapter validate`, `http.client`: not paths
            paths.append(word if word.split("/")[0] in ROOTS else home + word)
    return paths


def test_every_path_the_map_names_exists() -> None:
    missing = [path for path in mapped_paths() if not (ROOT / path).exists()]
    assert not missing, f"README.md's map names what is not there: {missing}"


def test_every_package_under_adapter_is_on_the_map() -> None:
    mapped = {(ROOT / path).resolve() for path in mapped_paths()}
    packages = sorted(
        init.parent
        for init in (ROOT / "adapter").rglob("*.py")
        if init.parent != ROOT / "adapter" and "__pycache__" not in init.parts
    )
    unmapped = sorted({str(p.relative_to(ROOT)) for p in packages if p.resolve() not in mapped})
    assert not unmapped, f"README.md's map leaves out {unmapped}"


def test_the_slug_rules_are_githubs() -> None:
    assert slug("The workflow in FHIR: who writes what") == "the-workflow-in-fhir-who-writes-what"
    assert slug("Soak: the real world's weather") == "soak-the-real-worlds-weather"
    assert slug("Where HAPI and the sandbox differ (met so far)") == "where-hapi-and-the-sandbox-differ-met-so-far"
    assert slug("`mmr-adapter setup` and task_states") == "mmr-adapter-setup-and-task_states"

"""The layering of ``adapter/`` as a test: which package may import which.

The layout (issue 22) is one home per concept, and the homes stand in layers: ``fhir`` talks FHIR
and knows nothing of MMR; the ``workflow`` is the functional core and never reaches for the
shell (``pipeline``, ``intake``, ``operations``, ``cli``, ``wiring``); ``conformance`` reads
``profiles/`` and its ``build`` makes them, the run time never needing the build; ``dev`` is for
development and only the CLI's dev commands reach it, lazily. Reading every import with ``ast``
(module level and inside functions, relative ones resolved) keeps that true without a person
rereading the imports: each failure names the file, the line and the rule.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHELL = ("adapter.pipeline", "adapter.intake", "adapter.operations", "adapter.cli", "adapter.wiring")


@dataclass(frozen=True)
class Import:
    """One module named by an import statement of a module of ours."""

    path: Path  # the importing file, relative to the root
    line: int
    importer: str  # dotted name of the importing module
    target: str  # dotted name imported (``from a import b`` gives ``a.b``)
    eager: bool  # runs when the module is imported (not inside a function)


def within(name: str, *packages: str) -> bool:
    """``name`` is one of ``packages`` or inside one of them."""
    return any(name == p or name.startswith(p + ".") for p in packages)


@dataclass(frozen=True)
class Rule:
    name: str
    why: str
    applies: Callable[[str], bool]  # to the importing module
    forbids: Callable[[Import], bool]


RULES = (
    Rule(
        "core-not-shell",
        "the workflow (functional core) does not import the shell or dev",
        lambda m: within(m, "adapter.workflow"),
        lambda i: within(i.target, *SHELL, "adapter.dev"),
    ),
    Rule(
        "fhir-alone",
        "fhir knows nothing of MMR: no workflow, mappings, conformance, shell or dev",
        lambda m: within(m, "adapter.fhir"),
        lambda i: within(
            i.target, "adapter.workflow", "adapter.mappings", "adapter.conformance", *SHELL, "adapter.dev"
        ),
    ),
    Rule(
        "views-generic",
        "the ViewDefinition runner knows FHIR, not MMR: no workflow, mappings, conformance, shell or dev",
        lambda m: within(m, "adapter.flow.viewdef"),
        lambda i: within(
            i.target, "adapter.workflow", "adapter.mappings", "adapter.conformance", *SHELL, "adapter.dev"
        ),
    ),
    Rule(
        "runtime-not-build",
        "conformance at run time does not import conformance.build",
        lambda m: within(m, "adapter.conformance") and not within(m, "adapter.conformance.build"),
        lambda i: within(i.target, "adapter.conformance.build"),
    ),
    Rule(
        "conformance-not-workflow",
        "conformance (build included) does not import the workflow",
        lambda m: within(m, "adapter.conformance"),
        lambda i: within(i.target, "adapter.workflow"),
    ),
    Rule(
        "dev-only-from-dev",
        "only adapter/dev/ and the CLI's dev commands import adapter.dev",
        lambda m: within(m, "adapter") and not within(m, "adapter.dev", "adapter.cli"),
        lambda i: within(i.target, "adapter.dev"),
    ),
    Rule(
        "cli-dev-lazily",
        "the CLI imports adapter.dev lazily, inside the dev command that needs it",
        lambda m: within(m, "adapter.cli"),
        lambda i: within(i.target, "adapter.dev") and i.eager,
    ),
    Rule(
        "no-tests-or-bench",
        "adapter/ does not import tests or bench",
        lambda m: within(m, "adapter"),
        lambda i: within(i.target, "tests", "bench"),
    ),
)


def module_name(path: Path) -> str:
    """``adapter/fhir/client.py`` -> ``adapter.fhir.client``; a package is its ``__init__``."""
    parts = path.with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(root: Path, path: Path) -> Iterator[Import]:
    """Every import in one file, at any depth, relative ones resolved against its package."""
    relative = path.relative_to(root)
    importer = module_name(relative)
    package = importer if relative.name == "__init__.py" else importer.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node, eager in _import_nodes(tree, eager=True):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(relative, node.lineno, importer, alias.name, eager)
        else:
            if node.level:
                parts = package.split(".")
                base = parts[: len(parts) - node.level + 1]  # level 1 is the package itself
                source = ".".join([*base, *([node.module] if node.module else [])])
            else:
                source = node.module or ""
            for alias in node.names:
                yield Import(relative, node.lineno, importer, f"{source}.{alias.name}", eager)


def _import_nodes(node: ast.AST, eager: bool) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    """The import statements under ``node``; those inside a function or lambda are not eager."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.Import | ast.ImportFrom):
            yield child, eager
        lazy = isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        yield from _import_nodes(child, eager and not lazy)


def violations(root: Path, package: str = "adapter") -> list[str]:
    """``file:line: imports X: rule`` for every import under ``root/package`` that a rule forbids."""
    found = []
    for path in sorted((root / package).rglob("*.py")):
        for imp in imports_of(root, path):
            for rule in RULES:
                if rule.applies(imp.importer) and rule.forbids(imp):
                    found.append(f"{imp.path.as_posix()}:{imp.line}: imports {imp.target}: [{rule.name}] {rule.why}")
    return found


def test_the_adapter_keeps_its_layers() -> None:
    assert violations(ROOT) == []


def test_the_checker_reads_the_tree() -> None:
    """A checker that read nothing would pass: it sees imports we know are there, and how."""
    cli = {(i.target, i.eager) for i in imports_of(ROOT, ROOT / "adapter/cli/dev.py")}
    assert ("adapter.dev.demo.run_demo", False) in cli
    task_states = {(i.importer, i.target, i.eager) for i in imports_of(ROOT, ROOT / "adapter/workflow/task_states.py")}
    assert ("adapter.workflow.task_states", "adapter.mappings.codes", True) in task_states


# ------------------------------------------------------- every rule can fail

BROKEN = [
    ("adapter/workflow/steps.py", "from adapter.pipeline import runner\n", "core-not-shell"),
    ("adapter/workflow/review/criteria.py", "def f():\n    from ...intake import app\n", "core-not-shell"),
    ("adapter/workflow/core.py", "import adapter.wiring\n", "core-not-shell"),
    ("adapter/fhir/client.py", "from adapter.mappings import codes\n", "fhir-alone"),
    ("adapter/fhir/client.py", "from ..workflow import core\n", "fhir-alone"),
    ("adapter/fhir/search.py", "from adapter import conformance\n", "fhir-alone"),
    ("adapter/fhir/auth.py", "def f():\n    import adapter.dev.sandbox\n", "fhir-alone"),
    ("adapter/flow/viewdef.py", "from adapter.mappings import codes\n", "views-generic"),
    ("adapter/flow/viewdef.py", "def f():\n    from ..workflow import calendar\n", "views-generic"),
    ("adapter/conformance/validate.py", "from .build import docs\n", "runtime-not-build"),
    ("adapter/conformance/build/docs.py", "from adapter.workflow import task_states\n", "conformance-not-workflow"),
    ("adapter/conformance/package.py", "import adapter.workflow.core\n", "conformance-not-workflow"),
    ("adapter/pipeline/runner.py", "from adapter.dev import demo\n", "dev-only-from-dev"),
    ("adapter/operations/setup.py", "def f():\n    from adapter.dev.hapi import run_hapi\n", "dev-only-from-dev"),
    ("adapter/cli/__init__.py", "from adapter.dev.demo import run_demo\n", "cli-dev-lazily"),
    ("adapter/cli/__init__.py", "try:\n    import adapter.dev.demo\nexcept ImportError:\n    pass\n", "cli-dev-lazily"),
    ("adapter/intake/app.py", "from tests import conftest\n", "no-tests-or-bench"),
    ("adapter/config.py", "def f():\n    import bench.load\n", "no-tests-or-bench"),
]


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        for parent in path.relative_to(tmp_path).parents:
            if parent != Path("."):
                (tmp_path / parent / "__init__.py").touch()
        path.write_text(text, encoding="utf-8")
    return tmp_path


@pytest.mark.parametrize(("file", "source", "rule"), BROKEN, ids=[f"{r}:{f}" for f, _, r in BROKEN])
def test_each_rule_fails_on_a_tree_that_breaks_it(tmp_path: Path, file: str, source: str, rule: str) -> None:
    root = _tree(tmp_path, {file: "import json\n\n" + source})
    found = violations(root)  # one import may break more than one rule: each is named
    line = 3 + source.count("\n", 0, source.index("import"))
    assert found and all(f.startswith(f"{file}:{line}: imports ") for f in found), found
    assert any(f"[{rule}]" in f for f in found), found


def test_every_rule_is_proved_to_fail() -> None:
    assert {r.name for r in RULES} == {rule for *_, rule in BROKEN}


def test_what_the_layers_allow_passes(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "adapter/workflow/steps.py": "from adapter.mappings import codes\nfrom adapter.fhir import fhirpath\n",
            "adapter/conformance/build/docs.py": "from adapter.mappings import codes\nfrom ..package import x\n",
            "adapter/conformance/build/generate.py": "from . import docs\nfrom .sources import examples\n",
            "adapter/cli/__init__.py": "def demo():\n    from adapter.dev.demo import run_demo\n",
            "adapter/dev/demo.py": "from adapter.pipeline import runner\nfrom . import sandbox\n",
            "adapter/pipeline/runner.py": "from adapter.workflow import core\n",
            "adapter/fhir/client.py": "from .transport import proxied\nimport httpx\n",
        },
    )
    assert violations(root) == []


def test_relative_levels(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "adapter/workflow/review/criteria.py": "from . import a\nfrom .. import b\nfrom ...fhir.client import c\n",
            "adapter/workflow/review/__init__.py": "from .criteria import d\nfrom ..core import e\n",
        },
    )
    got = {
        (i.importer, i.target)
        for p in ("adapter/workflow/review/criteria.py", "adapter/workflow/review/__init__.py")
        for i in imports_of(root, root / p)
    }
    assert got == {
        ("adapter.workflow.review.criteria", "adapter.workflow.review.a"),
        ("adapter.workflow.review.criteria", "adapter.workflow.b"),
        ("adapter.workflow.review.criteria", "adapter.fhir.client.c"),
        ("adapter.workflow.review", "adapter.workflow.review.criteria.d"),
        ("adapter.workflow.review", "adapter.workflow.core.e"),
    }

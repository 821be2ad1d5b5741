"""SQL on FHIR v2 ViewDefinitions: validated once, then run over FHIR resources into rows.

A ViewDefinition (https://sql-on-fhir.org/ig/) is the HL7 standard's way to say which rows and
columns a FHIR resource type gives, with FHIRPath for every value: the same JSON runs on Pathling,
on a warehouse's SQL-on-FHIR engine or here. This runner is the embedded one; it conforms to the
spec's *shareable* profile (``forEach``, ``forEachOrNull``, ``repeat``, ``unionAll``, nested
``select``, ``where``, ``constant``, ``collection`` columns, ``%rowIndex``,
``getResourceKey()``/``getReferenceKey()``) and is measured by the spec's own conformance cases
(``tests/data/sql-on-fhir/``, run by ``tests/test_flow_views.py``).

Two kinds of failure, kept apart because they mean different things to whoever wrote the view:
:class:`ViewError` (the ViewDefinition itself is wrong, found before any resource is read; it
names the element, ``ViewDefinition.select[0].column[1].name``, and the problem) and
:class:`RunError` (a valid view meets data it cannot tabulate: several values for a column that
is not a collection, a ``where`` giving something other than a boolean).

FHIRPath is :func:`adapter.fhir.fhirpath.nodes`: compiled once to Python where it can be,
fhirpathpy otherwise; nodes carry their element type so a ``forEach`` can go on to a choice
element (``value.ofType(Quantity)``).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from fhirpathpy.engine.nodes import FP_Type
from fhirpathpy.parser import parse

from adapter.fhir.fhirpath import Item, nodes, parse_error

NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
RESOURCE = re.compile(r"^[A-Z][A-Za-z]*$")
# The variables a path may use besides the view's constants: FHIRPath's own and the spec's %rowIndex.
BUILT_IN = frozenset({"rowIndex", "context", "resource", "rootResource", "ucum"})
# constant.value[x]: the FHIR types the spec allows, and the JSON each is written as.
CONSTANT_TYPES: dict[str, tuple[type, ...]] = {
    **dict.fromkeys(
        ("Base64Binary", "Canonical", "Code", "Date", "DateTime", "Id", "Instant", "Oid", "String", "Time", "Uri"),
        (str,),
    ),
    "Url": (str,),
    "Uuid": (str,),
    "Boolean": (bool,),
    "Decimal": (int, float),
    "Integer": (int,),
    "Integer64": (int, str),
    "PositiveInt": (int,),
    "UnsignedInt": (int,),
}
SELECT_KEYS = frozenset({"column", "select", "unionAll", "forEach", "forEachOrNull", "repeat", "id", "extension"})
COLUMN_KEYS = frozenset({"name", "path", "description", "collection", "type", "tag", "id", "extension"})

Row = dict[str, Any]


class ViewError(ValueError):
    """The ViewDefinition is not one this runner can run: ``where`` names the element, ``problem`` says why."""

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(f"{where}: {problem}")
        self.where = where
        self.problem = problem


class RunError(ValueError):
    """A valid view met data it cannot tabulate (named by element and resource, never by value)."""


@dataclass(frozen=True)
class Column:
    name: str
    path: str
    type: str | None
    collection: bool


@dataclass(frozen=True)
class Select:
    """One ``select`` element: its columns, nested selects and unionAll branches, over the nodes its
    ``forEach`` / ``forEachOrNull`` / ``repeat`` gives (the node it is given when none)."""

    where: str  # the element's path in the ViewDefinition, for messages
    columns: tuple[Column, ...]
    selects: tuple[Select, ...]
    union_all: tuple[Select, ...]
    for_each: str | None
    for_each_or_null: str | None
    repeat: tuple[str, ...]

    def names(self) -> list[str]:
        """Its columns in the spec's order: its own, then its selects', then its unionAll's."""
        names = [c.name for c in self.columns]
        for select in self.selects:
            names += select.names()
        if self.union_all:
            names += self.union_all[0].names()
        return names


@dataclass(frozen=True)
class View:
    """A validated ViewDefinition, ready to run: see :func:`parse_view`."""

    resource: str
    root: Select
    where: tuple[str, ...]
    constants: Mapping[str, Any]
    name: str | None

    @property
    def columns(self) -> list[str]:
        return self.root.names()

    def rows(self, resources: Iterable[Mapping[str, Any]]) -> Iterator[Row]:
        """The view's rows over ``resources`` (those of other types are passed over), columns in order."""
        columns = self.columns
        for resource in resources:
            if resource.get("resourceType") != self.resource:
                continue
            node: Item = (resource, self.resource)
            env = {**self.constants, "rowIndex": 0}
            if not all(self._kept(node, path, env) for path in self.where):
                continue
            for row in _select(self.root, node, env):
                yield {name: row.get(name) for name in columns}

    def _kept(self, node: Item, path: str, env: Mapping[str, Any]) -> bool:
        result = nodes(path)(node, env)
        if not result:
            return False
        if len(result) != 1 or not isinstance(result[0][0], bool):
            raise RunError(f"ViewDefinition.where path {path!r} gives no boolean for {_who(node)}")
        return result[0][0]


def run(view: View | Mapping[str, Any], resources: Iterable[Mapping[str, Any]]) -> list[Row]:
    """Every row of ``view`` (parsed first if given as JSON) over ``resources``."""
    return list((view if isinstance(view, View) else parse_view(view)).rows(resources))


# ---------------------------------------------------------------- running


def _select(select: Select, node: Item, env: Mapping[str, Any]) -> list[Row]:
    if select.for_each is not None:
        focus = nodes(select.for_each)(node, env)
    elif select.for_each_or_null is not None:
        focus = nodes(select.for_each_or_null)(node, env) or [({}, None)]
    elif select.repeat:
        focus = _repeat(select.repeat, node, env)
    else:
        return _product(select, node, env)
    rows: list[Row] = []
    for index, item in enumerate(focus):
        rows += _product(select, item, {**env, "rowIndex": index})
    return rows


def _product(select: Select, node: Item, env: Mapping[str, Any]) -> list[Row]:
    """Its columns' row, each nested select's rows and the unionAll's rows for one node, crossed."""
    parts: list[list[Row]] = []
    if select.columns:
        parts.append([{c.name: _column(c, node, env, select) for c in select.columns}])
    parts += [_select(s, node, env) for s in select.selects]
    if select.union_all:
        parts.append([row for branch in select.union_all for row in _select(branch, node, env)])
    rows: list[Row] = []
    for combination in itertools.product(*parts):
        row: Row = {}
        for part in combination:
            row.update(part)
        rows.append(row)
    return rows


def _repeat(paths: tuple[str, ...], node: Item, env: Mapping[str, Any]) -> list[Item]:
    """Every node the paths reach from ``node``, applied again to what they reach, depth first."""
    found: list[Item] = []

    def walk(item: Item) -> None:
        for path in paths:
            for child in nodes(path)(item, env):
                if isinstance(child[0], dict):
                    found.append(child)
                    walk(child)

    walk(node)
    return found


def _column(column: Column, node: Item, env: Mapping[str, Any], select: Select) -> Any:
    values = [value(data) for data, _ in nodes(column.path)(node, env)]
    if column.collection:
        return values
    if len(values) > 1:
        raise RunError(
            f"{select.where}.column '{column.name}': {len(values)} values for {_who(node)} in a column that is "
            "not a collection (set collection: true, or pick one with first())"
        )
    return values[0] if values else None


def value(data: Any) -> Any:
    """A FHIRPath value as a row holds it: JSON's types (a decimal a number, a date or time its text)."""
    if isinstance(data, Decimal):
        return int(data) if data == data.to_integral_value() and data.as_tuple().exponent == 0 else float(data)
    if isinstance(data, FP_Type):
        return str(data)
    return data


def _who(node: Item) -> str:
    data = node[0]
    return f"a {node[1] or 'node'}" if not isinstance(data, dict) or "resourceType" not in data else "a resource"


# ---------------------------------------------------------------- validating


def parse_view(data: Any) -> View:
    """The ViewDefinition ``data`` (JSON) checked and made ready to run; :class:`ViewError` at the first
    problem: structure, column names (valid, unique), one of forEach / forEachOrNull / repeat per select,
    unionAll branches with the same columns in the same order, FHIRPath that parses and names only
    defined constants, constants with one value of an allowed type."""
    top = "ViewDefinition"
    if not isinstance(data, dict):
        raise ViewError(top, "must be a JSON object")
    if data.get("resourceType", "ViewDefinition") != "ViewDefinition":
        raise ViewError(f"{top}.resourceType", "must be 'ViewDefinition'")
    resource = data.get("resource")
    if resource is None:
        raise ViewError(f"{top}.resource", "required: the FHIR resource type the view reads")
    if not isinstance(resource, str) or not RESOURCE.match(resource):
        raise ViewError(f"{top}.resource", "must be a FHIR resource type name")
    name = data.get("name")
    if name is not None and (not isinstance(name, str) or not NAME.match(name)):
        raise ViewError(f"{top}.name", "must be a name of letters, digits and _ starting with a letter")
    constants = _constants(data.get("constant"), f"{top}.constant")
    known = BUILT_IN | constants.keys()
    where: list[str] = []
    for i, element in enumerate(_list(data.get("where"), f"{top}.where")):
        here = f"{top}.where[{i}]"
        if not isinstance(element, dict):
            raise ViewError(here, "must be an object with a path")
        where.append(_path(element.get("path"), f"{here}.path", known))
    selects = _list(data.get("select"), f"{top}.select")
    if not selects:
        raise ViewError(f"{top}.select", "required: at least one select")
    root = Select(
        top,
        (),
        tuple(_select_of(s, f"{top}.select[{i}]", known) for i, s in enumerate(selects)),
        (),
        None,
        None,
        (),
    )
    seen: set[str] = set()
    for column in root.names():
        if column in seen:
            raise ViewError(f"{top}.select", f"column name '{column}' is used twice (names must be unique)")
        seen.add(column)
    return View(resource, root, tuple(where), constants, name)


def _list(data: Any, where: str) -> list[Any]:
    if data is None:
        return []
    if not isinstance(data, list):
        raise ViewError(where, "must be a list")
    return data


def _constants(data: Any, where: str) -> dict[str, Any]:
    constants: dict[str, Any] = {}
    for i, element in enumerate(_list(data, where)):
        here = f"{where}[{i}]"
        if not isinstance(element, dict):
            raise ViewError(here, "must be an object with a name and a value[x]")
        name = element.get("name")
        if not isinstance(name, str) or not NAME.match(name):
            raise ViewError(f"{here}.name", "required: letters, digits and _, starting with a letter")
        if name in constants:
            raise ViewError(f"{here}.name", f"constant '{name}' is defined twice")
        values = [key for key in element if key.startswith("value")]
        if len(values) != 1:
            raise ViewError(here, f"constant '{name}' needs exactly one value[x], has {len(values)}")
        kind = values[0].removeprefix("value")
        allowed = CONSTANT_TYPES.get(kind)
        if allowed is None:
            raise ViewError(f"{here}.{values[0]}", f"value{kind} is not a type a constant may have")
        given = element[values[0]]
        if isinstance(given, bool) != (bool in allowed) or not isinstance(given, allowed):
            raise ViewError(f"{here}.{values[0]}", f"not a {kind[0].lower() + kind[1:]} value")
        constants[name] = given
    return constants


def _path(data: Any, where: str, known: frozenset[str] | set[str]) -> str:
    if not isinstance(data, str) or not data.strip():
        raise ViewError(where, "must be a FHIRPath expression (a non-empty string)")
    error = parse_error(data)
    if error is not None:
        raise ViewError(where, f"not valid FHIRPath ({error})")
    for variable in _variables(parse(data)):
        if variable not in known:
            raise ViewError(where, f"uses %{variable}, which is no constant of the view")
    return data


def _variables(tree: Any) -> Iterator[str]:
    """The ``%names`` an expression's parse tree uses."""
    if isinstance(tree, dict):
        if tree.get("type") == "ExternalConstantTerm":
            text = "".join(_texts(tree)).lstrip("%").strip("`'")
            yield text
            return
        for child in tree.get("children") or ():
            yield from _variables(child)


def _texts(tree: Any) -> Iterator[str]:
    if isinstance(tree, dict):
        children = tree.get("children") or ()
        if not children:
            yield from (t for t in tree.get("terminalNodeText") or () if t != "%")
        for child in children:
            yield from _texts(child)


def _select_of(data: Any, where: str, known: frozenset[str] | set[str]) -> Select:
    if not isinstance(data, dict):
        raise ViewError(where, "must be an object")
    unknown = sorted(set(data) - SELECT_KEYS)
    if unknown:
        raise ViewError(f"{where}.{unknown[0]}", "is no element of a select")
    iterations = [key for key in ("forEach", "forEachOrNull", "repeat") if key in data]
    if len(iterations) > 1:
        raise ViewError(where, f"{' and '.join(iterations)} together: a select iterates one way at most")
    for_each = _path(data["forEach"], f"{where}.forEach", known) if "forEach" in data else None
    or_null = _path(data["forEachOrNull"], f"{where}.forEachOrNull", known) if "forEachOrNull" in data else None
    repeat: tuple[str, ...] = ()
    if "repeat" in data:
        paths = _list(data["repeat"], f"{where}.repeat")
        if not paths:
            raise ViewError(f"{where}.repeat", "must list at least one FHIRPath expression")
        repeat = tuple(_path(p, f"{where}.repeat[{i}]", known) for i, p in enumerate(paths))
    columns = tuple(
        _column_of(c, f"{where}.column[{i}]", known) for i, c in enumerate(_list(data.get("column"), f"{where}.column"))
    )
    if "column" in data and not columns:
        raise ViewError(f"{where}.column", "must list at least one column")
    selects = tuple(
        _select_of(s, f"{where}.select[{i}]", known) for i, s in enumerate(_list(data.get("select"), f"{where}.select"))
    )
    branches = tuple(
        _select_of(s, f"{where}.unionAll[{i}]", known)
        for i, s in enumerate(_list(data.get("unionAll"), f"{where}.unionAll"))
    )
    if "unionAll" in data and not branches:
        raise ViewError(f"{where}.unionAll", "must list at least one select")
    if branches:
        first = branches[0].names()
        for i, branch in enumerate(branches[1:], start=1):
            if branch.names() != first:
                raise ViewError(
                    f"{where}.unionAll[{i}]",
                    f"has columns {branch.names()}, the first branch {first}: every branch has the same, in order",
                )
    if not (columns or selects or branches):
        raise ViewError(where, "has no column, select or unionAll: it gives no column")
    return Select(where, columns, selects, branches, for_each, or_null, repeat)


def _column_of(data: Any, where: str, known: frozenset[str] | set[str]) -> Column:
    if not isinstance(data, dict):
        raise ViewError(where, "must be an object with a name and a path")
    unknown = sorted(set(data) - COLUMN_KEYS)
    if unknown:
        raise ViewError(f"{where}.{unknown[0]}", "is no element of a column")
    name = data.get("name")
    if not isinstance(name, str) or not NAME.match(name):
        raise ViewError(f"{where}.name", "required: letters, digits and _, starting with a letter")
    path = _path(data.get("path"), f"{where}.path", known)
    kind = data.get("type")
    if kind is not None and not isinstance(kind, str):
        raise ViewError(f"{where}.type", "must be a FHIR type name")
    collection = data.get("collection", False)
    if not isinstance(collection, bool):
        raise ViewError(f"{where}.collection", "must be true or false")
    return Column(name, path, kind, collection)

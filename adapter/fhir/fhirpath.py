"""FHIRPath for the rules in ``mappings/`` and the invariants in ``profiles/``: compiled once to Python.

fhirpathpy interprets its parse tree on every evaluation, about 5 µs a node: the eight
completeness rules and the referral profile's three invariants cost the worker half a millisecond
per new referral. :func:`compiled` turns the parse tree fhirpathpy makes into nested closures for
the part of FHIRPath those expressions use: navigation (choice types resolved by fhirpathpy's R4
model), ``%variables``, string and boolean literals, ``=``, ``!=``, ``<``, ``>``, ``<=``, ``>=``,
``and``, ``or``, ``xor``, ``implies``, and ``exists()``, ``empty()``, ``not()``, ``where()``,
``all()``, ``isDistinct()``, ``startsWith()``, ``toDateTime()`` (the last and the comparisons are
fhirpathpy's own functions, called without its interpreter); and, for the SQL on FHIR views
(``adapter/flow/``), ``$this``, integer literals and ``[n]``, ``first()``, ``ofType()``,
``extension(url)``, ``join()``, ``iif()``, ``+`` on two strings, ``{}`` and the two functions SQL on
FHIR v2 adds to FHIRPath,
``getResourceKey()`` and ``getReferenceKey([type])`` (known to fhirpathpy through its
``userInvocationTable``, so both engines answer them alike).

:func:`compiled` answers with values, as ``fhirpathpy.evaluate``; :func:`nodes` answers with
nodes (a value and its element type), as a view runner needs to go on from a ``forEach``: a
choice element (``value.ofType(Quantity)``) is only resolvable knowing where the node came from.

fhirpathpy stays the definition. An expression using anything else is handed to it whole, and so
is an evaluation meeting data whose meaning is subtler than the compiled part models (a primitive's
``_extension``, a decimal, a date-typed element compared with ``=``, a non-boolean where a boolean is
expected, an error fhirpathpy would raise): the compiled function raises :class:`_Subtle` and fhirpathpy answers. Both
give the same answer for every input; ``tests/test_fhirpath.py`` holds them to it with generated
resources.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from functools import cache
from typing import Any

import fhirpathpy
from antlr4 import CommonTokenStream, InputStream, Token
from antlr4.error.ErrorListener import ErrorListener
from fhirpathpy.engine.evaluators import boolean_literal, identifier, string_literal
from fhirpathpy.engine.invocations import equality, logic, misc
from fhirpathpy.engine.nodes import ResourceNode
from fhirpathpy.models import models
from fhirpathpy.parser import parse
from fhirpathpy.parser.generated.FHIRPathLexer import FHIRPathLexer
from fhirpathpy.parser.generated.FHIRPathParser import FHIRPathParser

R4 = models["r4"]
CHOICES: dict[str, list[str]] = R4["choiceTypePaths"]
ELSEWHERE: dict[str, str] = R4["pathsDefinedElsewhere"]
TYPES: dict[str, str] = R4["path2Type"]

Item = tuple[Any, str | None]  # a node's data and its element path (fhirpathpy's ResourceNode)
Env = Mapping[str, Any]
Step = Callable[[list[Item], Env], list[Item]]
Evaluate = Callable[[Any, Mapping[str, Any] | None], list[Any]]
Nodes = Callable[[Item, Mapping[str, Any]], list[Item]]

LOGIC = {"and": logic.and_op, "or": logic.or_op, "xor": logic.xor_op, "implies": logic.implies_op}
ORDER = {"<": equality.lt, ">": equality.gt, "<=": equality.lte, ">=": equality.gte}
PLAIN = (str, bool, int)  # data the compiled part compares (not float: fhirpathpy makes it a Decimal)


class _Subtle(Exception):
    """This evaluation needs fhirpathpy itself."""


class _Unsupported(Exception):
    """The expression uses FHIRPath the compiler does not know: fhirpathpy evaluates it."""


def resource_key(data: Any) -> str | None:
    """SQL on FHIR's ``getResourceKey()``: the resource's id (a key a view's rows join on)."""
    if isinstance(data, dict) and isinstance(data.get("resourceType"), str) and isinstance(data.get("id"), str):
        return str(data["id"])
    return None


def reference_key(data: Any, resource_type: str | None = None) -> str | None:
    """SQL on FHIR's ``getReferenceKey([type])``: the id a Reference points to, as ``getResourceKey()`` of
    that resource gives it (relative or absolute, a version dropped); none when ``resource_type`` is given
    and the reference is to another type, or the reference names no type and id."""
    reference = data.get("reference") if isinstance(data, dict) else None
    if not isinstance(reference, str):
        return None
    parts = reference.split("/_history/")[0].split("/")
    if len(parts) < 2 or not parts[-1] or not parts[-2]:
        return None
    if resource_type is not None and parts[-2] != resource_type:
        return None
    return parts[-1]


def _user_resource_key(inputs: list[Any]) -> list[str]:
    return [key for key in map(resource_key, inputs) if key is not None]


def _user_reference_key(inputs: list[Any], type_info: Any = None) -> list[str]:
    name = getattr(type_info, "name", None)
    return [key for data in inputs if (key := reference_key(data, name)) is not None]


def join(inputs: list[Any], separator: str = "") -> str:
    """``join([separator])`` as SQL on FHIR's conformance cases hold it: the empty collection joins to ''
    (fhirpathpy's own gives the empty collection); anything but strings is an error."""
    if not all(isinstance(data, str) for data in inputs):
        raise TypeError("join() needs a collection of strings")
    return separator.join(inputs)


OPTIONS: dict[str, Any] = {
    "userInvocationTable": {
        "getResourceKey": {"fn": _user_resource_key, "arity": {0: []}},
        "getReferenceKey": {"fn": _user_reference_key, "arity": {0: [], 1: ["TypeSpecifier"]}},
        "join": {"fn": join, "arity": {0: [], 1: ["String"]}},
    }
}


class _Strict(ErrorListener):  # type: ignore[misc]  # antlr4 ships no types
    """Raise at the first syntax error: fhirpathpy's parser recovers from them silently."""

    def syntaxError(self, recognizer: Any, offending: Any, line: int, column: int, msg: str, e: Any) -> None:
        raise ValueError(f"at character {column + 1}: {msg.split(' expecting ')[0]}")


def parse_error(expression: str) -> str | None:
    """Why ``expression`` is not FHIRPath, in a few words; None if it is. fhirpathpy's grammar, read
    strictly: every syntax error counts and the whole text must be one expression."""
    lexer = FHIRPathLexer(InputStream(expression))
    lexer.removeErrorListeners()
    lexer.addErrorListener(_Strict())
    tokens = CommonTokenStream(lexer)
    parser = FHIRPathParser(tokens)
    parser.removeErrorListeners()
    parser.addErrorListener(_Strict())
    try:
        parser.expression()
        if tokens.LA(1) != Token.EOF:
            return f"at character {tokens.LT(1).start + 1}: unexpected {tokens.LT(1).text!r}"
    except Exception as exc:
        return str(exc)[:160] or type(exc).__name__
    return None


@cache
def nodes(expression: str) -> Nodes:
    """A function of (node, variables) giving the nodes ``expression`` selects from ``node``, a node being
    (data, element type or path, None for a value without one). Parsed once; compiled where the compiled
    part models the expression and the data, else fhirpathpy's answer on the same node."""
    interpreted = _interpreter(expression, {**OPTIONS, "returnRawData": True})
    try:
        step: Step | None = _compile(parse(expression)["children"][0])
    except _Unsupported:
        step = None

    def evaluate(node: Item, variables: Mapping[str, Any]) -> list[Item]:
        if step is not None:
            try:
                env = {"context": node[0], "ucum": "http://unitsofmeasure.org", THIS_AT_TOP: True, **variables}
                return step([node], env)
            except _Subtle:
                pass
        result = interpreted(ResourceNode.create_node(node[0], node[1]), dict(variables))
        return [(r.data, r.path) if isinstance(r, ResourceNode) else (r, None) for r in result]

    return evaluate


@cache
def compiled(expression: str) -> Evaluate:
    """A function of (resource, variables) giving what ``fhirpathpy.evaluate`` gives, parsed once."""
    interpreted = _interpreter(expression, OPTIONS)
    try:
        step = _compile(parse(expression)["children"][0])
    except _Unsupported:
        return interpreted

    def evaluate(resource: Any, variables: Mapping[str, Any] | None = None) -> list[Any]:
        env = {"context": resource, "ucum": "http://unitsofmeasure.org", **(variables or {})}
        try:
            if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
                raise _Subtle
            return _output(step([(resource, None)], env))  # as given: navigation reads its resourceType
        except _Subtle:
            return interpreted(resource, variables)

    return evaluate


def _interpreter(expression: str, options: dict[str, Any]) -> Callable[..., list[Any]]:
    """fhirpathpy's own evaluation of ``expression``, parsed at its first use: a compiled expression may
    never need it, and fhirpathpy's parser costs milliseconds an expression (the flow store's views
    have about 150 paths, parsed anew in every process that refreshes it)."""
    made: list[Callable[..., list[Any]]] = []

    def evaluate(*args: Any) -> list[Any]:
        if not made:
            made.append(fhirpathpy.compile(expression, R4, options))
        result: list[Any] = made[0](*args)
        return result

    return evaluate


def _output(items: list[Item]) -> list[Any]:
    out = [data for data, _ in items]
    if any(not isinstance(data, PLAIN) for data in out):
        raise _Subtle  # fhirpathpy copies complex values (dropping extension-only ones)
    return out


# ---------------------------------------------------------------- the parse tree


def _compile(node: dict[str, Any]) -> Step:
    kind = node["type"]
    children = node.get("children") or []
    if kind in ("TermExpression", "InvocationTerm", "ParenthesizedTerm", "LiteralTerm"):
        return _compile(children[0])
    if kind == "InvocationExpression":
        first, then = _compile(children[0]), _compile(children[1])
        return lambda focus, env: then(first(focus, env), env)
    if kind == "MemberInvocation":
        return _member(_name(children[0]))
    if kind == "ThisInvocation":
        return _this
    if kind == "NumberLiteral" and node["terminalNodeText"][0].isdigit():
        return _constant([int(node["terminalNodeText"][0])])
    if kind == "IndexerExpression" and _literal(children[1]) == "NumberLiteral":
        index = _literal_node(children[1])["terminalNodeText"][0]
        if index.isdigit():
            return _indexer(_compile(children[0]), int(index))
    if kind == "FunctionInvocation":
        return _function(children[0])
    if kind == "StringLiteral":
        return _constant(string_literal(None, None, node))
    if kind == "NullLiteral":
        return _constant([])
    if kind == "AdditiveExpression" and node["terminalNodeText"][0] == "+":
        return _plus(_compile(children[0]), _compile(children[1]))
    if kind == "BooleanLiteral":
        return _constant(boolean_literal(None, None, node))
    if kind == "ExternalConstantTerm":
        return _variable(_name(children[0]["children"][0]))
    if kind == "EqualityExpression" and node["terminalNodeText"][0] in ("=", "!="):
        return _equality(node["terminalNodeText"][0] == "=", _compile(children[0]), _compile(children[1]))
    if kind in ("AndExpression", "OrExpression", "ImpliesExpression"):
        return _logic(LOGIC[node["terminalNodeText"][0]], _compile(children[0]), _compile(children[1]))
    if kind == "InequalityExpression":
        return _order(ORDER[node["terminalNodeText"][0]], _compile(children[0]), _compile(children[1]))
    raise _Unsupported(kind)


THIS_AT_TOP = "\x00$this"  # in the variables of nodes(): no %name can spell it


def _this(focus: list[Item], env: Env) -> list[Item]:
    """``$this``: in a function's criteria its item; at the top of an expression the input, as FHIRPath
    has it and a view's column ``$this`` under a ``forEach`` needs, where fhirpathpy raises a KeyError
    (so :func:`compiled`, held to fhirpathpy's answers, hands that case to it)."""
    if len(focus) == 1 and focus[0][0] is env.get("context") and not env.get(THIS_AT_TOP):
        raise _Subtle
    return focus


def _name(node: dict[str, Any]) -> str:
    return str(identifier(None, None, node)[0]).replace("`", "")


def _constant(value: list[Any]) -> Step:
    items: list[Item] = [(v, None) for v in value]
    return lambda focus, env: items


def _variable(name: str) -> Step:
    def step(focus: list[Item], env: Env) -> list[Item]:
        if name not in env:
            raise _Subtle  # fhirpathpy raises its own error
        value = env[name]
        values = [] if value is None else value if isinstance(value, list) else [value]
        return [(v, None) for v in values]  # as given, not yet a node (``_where`` tells them apart)

    return step


# ---------------------------------------------------------------- navigation


def _member(key: str) -> Step:
    """A path step. What the model says of ``key`` under a parent's type (its element type, or its choice
    types) is looked up once per parent type, not once per node: a view reads the same few paths over
    every resource."""
    if not key or key[0] == key[0].upper():
        raise _Unsupported("a type name as a path step")  # fhirpathpy's test for one
    underscored = f"_{key}"
    # parent's path -> (the child's type, or for a choice element each (key, _key, type) to try in turn)
    known: dict[str | None, tuple[str, list[tuple[str, str, str]] | None]] = {}

    def resolve(path: str | None) -> tuple[str, list[tuple[str, str, str]] | None]:
        child = f"{path}.{key}" if path else f"_.{key}"
        child = ELSEWHERE.get(child, child)
        if types := CHOICES.get(child):
            return child, [
                (key + suffix, f"_{key}{suffix}", TYPES.get(child + suffix, child + suffix)) for suffix in types
            ]
        if key == "extension":
            child = "Extension"
        return TYPES.get(child, child), None

    def step(focus: list[Item], env: Env) -> list[Item]:
        out: list[Item] = []
        for data, path in focus:
            if not isinstance(data, dict):
                if key == "length":
                    raise _Subtle
                continue
            if "resourceType" in data:
                if not isinstance(data["resourceType"], str):
                    raise _Subtle
                path = data["resourceType"]
            found = known.get(path)
            if found is None:
                found = known[path] = resolve(path)
            child, choices = found
            value = None
            if choices is not None:
                for name, extended, typed in choices:
                    if extended in data:
                        raise _Subtle
                    if (value := data.get(name)) is not None:
                        child = typed
                        break
            else:
                if underscored in data:
                    raise _Subtle  # a primitive's extension: fhirpathpy pairs the two
                value = data.get(key)
            if isinstance(value, list):
                if any(v is None for v in value):
                    raise _Subtle
                out += [(v, child) for v in value]
            elif value is not None:
                out.append((value, child))
        return out

    return step


# ---------------------------------------------------------------- operators


def _plain(items: list[Item]) -> Any:
    """The one value of a singleton the compiled part can compare."""
    if len(items) != 1:
        raise _Subtle
    data, path = items[0]
    if not isinstance(data, PLAIN) or path in ("date", "dateTime", "instant", "time"):
        raise _Subtle
    return data


def _equality(equal: bool, left: Step, right: Step) -> Step:
    def step(focus: list[Item], env: Env) -> list[Item]:
        a, b = left(focus, env), right(focus, env)
        if not a or not b:
            return []
        same = _plain(a) == _plain(b)
        return [(same if equal else not same, None)]

    return step


def _plus(left: Step, right: Step) -> Step:
    """``+`` of two strings: their concatenation (the views build a key with it); empty if either side is.
    Numbers, dates and quantities are fhirpathpy's (its ``plus`` converts them first)."""

    def step(focus: list[Item], env: Env) -> list[Item]:
        a, b = left(focus, env), right(focus, env)
        if not a or not b:
            return []
        x, y = _plain(a), _plain(b)
        if not isinstance(x, str) or not isinstance(y, str):
            raise _Subtle
        return [(x + y, None)]

    return step


def _boolean(items: list[Item]) -> bool | list[Any]:
    """An operand of a logical operator: a boolean or the empty collection."""
    if not items:
        return []
    if len(items) != 1 or not isinstance(items[0][0], bool):
        raise _Subtle  # fhirpathpy raises
    return bool(items[0][0])


def _logic(op: Callable[..., Any], left: Step, right: Step) -> Step:
    def step(focus: list[Item], env: Env) -> list[Item]:
        result = op(None, _boolean(left(focus, env)), _boolean(right(focus, env)))
        return [] if result == [] else [(result, None)]

    return step


def _order(op: Callable[..., Any], left: Step, right: Step) -> Step:
    """``<``, ``>``, ``<=``, ``>=``: fhirpathpy's own comparison (dates and their precision), on singletons."""

    def step(focus: list[Item], env: Env) -> list[Item]:
        a, b = left(focus, env), right(focus, env)
        if not a or not b:
            return []
        if len(a) != 1 or len(b) != 1:
            raise _Subtle
        return _items(_delegated(op, [a[0][0]], [b[0][0]]))

    return step


def _delegated(fn: Callable[..., Any], *args: Any) -> Any:
    """One of fhirpathpy's functions on plain data (it reads a node's data the same way); should it fail,
    fhirpathpy evaluates the whole expression and fails its own way."""
    try:
        return fn(None, *args)
    except Exception as exc:
        raise _Subtle from exc


def _items(result: Any) -> list[Item]:
    """A function's result as fhirpathpy collects it (``util.arraify``): None and [] are empty."""
    if isinstance(result, list):
        return [(v, None) for v in result]
    return [] if result is None else [(result, None)]


# ---------------------------------------------------------------- functions


def _function(functn: dict[str, Any]) -> Step:
    parts = functn["children"]
    name = _name(parts[0])
    params = parts[1]["children"] if len(parts) > 1 else []
    if name in ("exists", "empty", "isDistinct", "not") and not params:
        return {"exists": _exists, "empty": _empty, "isDistinct": _is_distinct, "not": _not}[name]
    if name == "toDateTime" and not params:
        return lambda focus, env: _items(_delegated(misc.to_date_time, [data for data, _ in focus]))
    if name in ("where", "all", "exists") and len(params) == 1:
        criteria = _compile(params[0])
        return {"where": _where, "all": _all, "exists": _exists_where}[name](criteria)
    if name == "startsWith" and len(params) == 1 and _literal(params[0]) == "StringLiteral":
        return _starts_with(str(string_literal(None, None, _literal_node(params[0]))[0]))
    if name == "iif" and len(params) in (2, 3):
        return _iif(*[_compile(p) for p in params])
    if name == "first" and not params:
        return lambda focus, env: focus[:1]
    if name == "getResourceKey" and not params:
        return _keys(resource_key)
    if name == "getReferenceKey" and len(params) <= 1:
        wanted = _type_name(params[0]) if params else None
        return _keys(lambda data: reference_key(data, wanted))
    if name == "ofType" and len(params) == 1:
        return _of_type(_type_name(params[0]))
    if name == "extension" and len(params) == 1 and _literal(params[0]) == "StringLiteral":
        return _extension(str(string_literal(None, None, _literal_node(params[0]))[0]))
    if name == "join" and len(params) <= 1 and all(_literal(p) == "StringLiteral" for p in params):
        separator = [str(string_literal(None, None, _literal_node(p))[0]) for p in params]
        return lambda focus, env: [(_joined([data for data, _ in focus], separator), None)]
    raise _Unsupported(name)


def _joined(inputs: list[Any], separator: list[str]) -> str:
    try:
        return join(inputs, *separator)
    except TypeError as exc:
        raise _Subtle from exc  # fhirpathpy raises it as its own error


def _type_name(node: dict[str, Any]) -> str:
    """A type specifier given as a bare name (``Patient``, ``string``); a qualified one is not compiled."""
    while node.get("type") in ("TermExpression", "InvocationTerm") and node.get("children"):
        node = node["children"][0]
    if node.get("type") != "MemberInvocation":
        raise _Unsupported("a qualified type specifier")
    return _name(node["children"][0])


def _indexer(collection: Step, index: int) -> Step:
    return lambda focus, env: collection(focus, env)[index : index + 1]


def _keys(key: Callable[[Any], str | None]) -> Step:
    def step(focus: list[Item], env: Env) -> list[Item]:
        return [(k, "string") for data, _ in focus if (k := key(data)) is not None]

    return step


def _of_type(name: str) -> Step:
    """``ofType(T)`` where each node's type is known: a resource's own, or an element's from the model."""

    def step(focus: list[Item], env: Env) -> list[Item]:
        out: list[Item] = []
        for data, path in focus:
            if isinstance(data, dict) and isinstance(data.get("resourceType"), str):
                kind = data["resourceType"]
            elif path is None or "." in path:
                raise _Subtle  # a literal, or an element whose type the model maps elsewhere
            else:
                kind = path
            if kind == name:
                out.append((data, path))
        return out

    return step


def _extension(url: str) -> Step:
    def step(focus: list[Item], env: Env) -> list[Item]:
        out: list[Item] = []
        for data, _ in focus:
            if not isinstance(data, dict):
                raise _Subtle  # a primitive's extensions are in its ``_element``: fhirpathpy pairs them
            extensions = data.get("extension", [])  # a falsy non-list ("", 0) is fhirpathpy's to judge
            if not isinstance(extensions, list) or not all(isinstance(e, dict) for e in extensions):
                raise _Subtle
            found = [(e, "Extension") for e in extensions if e.get("url") == url]
            if len(found) > 1:
                raise _Subtle  # fhirpathpy (the definition) answers only the first of several: its call
            out += found
        return out

    return step


def _literal_node(node: dict[str, Any]) -> dict[str, Any]:
    while node.get("type") in ("TermExpression", "LiteralTerm") and node.get("children"):
        node = node["children"][0]
    return node


def _literal(node: dict[str, Any]) -> str | None:
    return _literal_node(node).get("type")


def _exists(focus: list[Item], env: Env) -> list[Item]:
    return [(bool(focus), None)]


def _empty(focus: list[Item], env: Env) -> list[Item]:
    return [(not focus, None)]


def _not(focus: list[Item], env: Env) -> list[Item]:
    if len(focus) != 1:
        return []
    if not isinstance(focus[0][0], bool):
        raise _Subtle
    return [(not focus[0][0], None)]


def _is_distinct(focus: list[Item], env: Env) -> list[Item]:
    try:
        keys = {json.dumps(data, sort_keys=True) for data, _ in focus}
    except TypeError as exc:
        raise _Subtle from exc
    return [(len(keys) == len(focus), None)]


def _kept(result: list[Item]) -> bool:
    """fhirpathpy's ``where``: the criterion's first item is truthy, and a node (a navigated element,
    whose path is known) always is, whatever its value."""
    return bool(result) and (result[0][1] is not None or bool(result[0][0]))


def _true(result: list[Item]) -> bool:
    """fhirpathpy's ``all``: the criterion gives exactly one item equal to true."""
    return len(result) == 1 and result[0][0] == True  # noqa: E712 (1 is true here too, as in fhirpathpy)


def _where(criteria: Step) -> Step:
    return lambda focus, env: [item for item in focus if _kept(criteria([item], env))]


def _exists_where(criteria: Step) -> Step:
    return lambda focus, env: [(any([_kept(criteria([item], env)) for item in focus]), None)]  # every item


def _all(criteria: Step) -> Step:
    return lambda focus, env: [(all(_true(criteria([item], env)) for item in focus), None)]  # stops at a no


def _iif(criterion: Step, then: Step, otherwise: Step | None = None) -> Step:
    """``iif(criterion, true-result [, otherwise-result])`` as fhirpathpy's macro: each argument evaluated on
    the function's whole input, only the branch taken; the criterion holds when it is one item equal to
    true (its ``util.is_true``)."""

    def step(focus: list[Item], env: Env) -> list[Item]:
        if _true(criterion(focus, env)):
            return then(focus, env)
        return otherwise(focus, env) if otherwise is not None else []

    return step


def _starts_with(prefix: str) -> Step:
    def step(focus: list[Item], env: Env) -> list[Item]:
        if not focus:
            return []
        if len(focus) != 1 or not isinstance(focus[0][0], str):
            raise _Subtle
        return [(bool(focus[0][0]) and focus[0][0].startswith(prefix), None)]

    return step

"""Search values written the FHIR way, so a server parses them back to exactly what was meant.

HAPI parses an ``If-None-Exist`` value (and ``ifNoneExist`` in a transaction) as a search URL:
URL-decoded first (``+`` becomes a space, ``%xx`` a byte), then split on ``&``; within a token
value ``,`` means OR, ``|`` separates system and code, and ``\\`` escapes ``,``, ``|``, ``$`` and
itself. An identifier such as ``A,B|C`` would otherwise match other resources or none.
"""

from __future__ import annotations

from urllib.parse import quote

_SEARCH_SPECIALS = ("\\", ",", "|", "$")  # backslash first: it escapes the others


def escape(value: str) -> str:
    """Escape FHIR search's special characters in one value (before URL encoding)."""
    for ch in _SEARCH_SPECIALS:
        value = value.replace(ch, "\\" + ch)
    return value


def token(system: str | None, value: str) -> str:
    """A token search value ``system|value``, escaped and URL-encoded, ready to follow ``name=``.

    Everything but unreserved characters and ``:/`` is percent-encoded (``%``, ``&``, ``#``, ``+``,
    spaces, non-ASCII), so the value survives URL decoding and also fits in an HTTP header.
    """
    code = quote(escape(value), safe="")
    return code if system is None else f"{quote(escape(system), safe=':/')}|{code}"


def identifier_criteria(system: str, value: str) -> str:
    """The conditional-create criteria ``identifier=system|value`` for one business identifier."""
    return f"identifier={token(system, value)}"

"""Run mypy and hold its errors to a recorded baseline that only shrinks.

Typing the whole tree at once would be one large change of no behaviour; instead every error mypy
reports today is written down in ``.ci/mypy-baseline.txt``, and from then on:

- an error that is not in the baseline fails (new code is typed);
- an error in the baseline that no longer occurs fails too, until the file is rewritten with
  ``--write`` (so a fix is recorded and cannot come back unnoticed);
- nothing under a strict package may be in the baseline at all: those are clean. The strict packages
  are read from ``pyproject.toml`` (every override that sets ``disallow_untyped_defs``), so making a
  package strict there is all it takes.

An error is compared without its line number (``path: [code] message``), so editing a file
above an old error does not disturb the check; the same error twice in a file counts twice.

    python3 .ci/mypy_baseline.py                      # the check (.ci/run)
    python3 .ci/mypy_baseline.py --write              # drop the errors that no longer occur
    python3 .ci/mypy_baseline.py --write --accept-new # record today's errors as they are (review the diff)
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tomllib
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BASELINE = ROOT / ".ci" / "mypy-baseline.txt"


def strict_paths() -> tuple[str, ...]:
    """Where the strict overrides of pyproject.toml apply, as path prefixes: ``adapter.fhir`` and
    ``adapter.fhir.*`` are ``adapter/fhir/``, a module ``adapter.wiring`` is ``adapter/wiring.py``."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    prefixes: set[str] = set()
    for override in config["tool"]["mypy"].get("overrides", []):
        if not override.get("disallow_untyped_defs"):
            continue
        modules = override["module"]
        for module in [modules] if isinstance(modules, str) else modules:
            path = module.removesuffix(".*").replace(".", "/")
            if (ROOT / path).is_dir():
                prefixes.add(f"{path}/")
            if (ROOT / f"{path}.py").is_file():
                prefixes.add(f"{path}.py")
    return tuple(sorted(prefixes))


STRICT = strict_paths()  # never baselined
HEADER = """\
# mypy errors accepted for now; written by .ci/mypy_baseline.py --write. This file only shrinks:
# fix an error, then run `python3 .ci/mypy_baseline.py --write` to drop it. One error a line:
# path: [code] message (no line numbers; a repeated line is the same error more than once).
"""

# path:line: error: message  [code]  (column and code optional; notes are not errors)
ERROR = re.compile(r"^(?P<path>[^:\s][^:]*):(?:\d+:)*\s*error: (?P<message>.*?)(?:  \[(?P<code>[a-z0-9-]+)\])?$")


def normalise(path: str, message: str, code: str | None) -> str:
    """One error without where in the file it is: line numbers inside the message go too."""
    message = re.sub(r"\bon line \d+\b", "on line ?", message)
    return f"{path}: [{code or 'error'}] {message}"


def run_mypy() -> Counter[str]:
    """Today's errors, counted; exits when mypy itself fails (a crash or a bad configuration)."""
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-error-summary", "--no-pretty", "--no-color-output"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if done.returncode not in (0, 1):
        sys.exit(f"mypy failed (exit {done.returncode}):\n{done.stdout}{done.stderr}")
    errors: Counter[str] = Counter()
    for line in done.stdout.splitlines():
        m = ERROR.match(line)
        if m:
            errors[normalise(m["path"], m["message"], m["code"])] += 1
    if done.returncode == 1 and not errors:
        sys.exit(f"mypy failed and no error line was understood:\n{done.stdout}{done.stderr}")
    return errors


def read_baseline() -> Counter[str]:
    if not BASELINE.exists():
        return Counter()
    lines = BASELINE.read_text(encoding="utf-8").splitlines()
    return Counter(line for line in lines if line.strip() and not line.startswith("#"))


def write_baseline(errors: Counter[str]) -> None:
    BASELINE.write_text(HEADER + "".join(f"{e}\n" for e in sorted(errors.elements())), encoding="utf-8")


def strict_entries(errors: Counter[str]) -> list[str]:
    return sorted(e for e in errors if e.startswith(STRICT))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write", action="store_true", help="rewrite the baseline: drop the errors that are gone")
    parser.add_argument(
        "--accept-new", action="store_true", help="with --write: record new errors too (a reviewed, deliberate growth)"
    )
    args = parser.parse_args(argv)
    if args.accept_new and not args.write:
        parser.error("--accept-new only goes with --write")

    current, baseline = run_mypy(), read_baseline()
    strict = strict_entries(current)
    new = Counter({e: n for e, n in (current - baseline).items() if not e.startswith(STRICT)})
    gone = baseline - current

    if args.write:
        keep = current if args.accept_new else current & baseline
        keep = Counter({e: n for e, n in keep.items() if not e.startswith(STRICT)})
        write_baseline(keep)
        print(f"{BASELINE.relative_to(ROOT)}: {sum(keep.values())} errors (was {sum(baseline.values())})")
        left = sorted((current - keep).elements())
        if left:
            print(f"{len(left)} errors are not in it and still fail the check (strict packages are never baselined):")
            print("".join(f"  {e}\n" for e in left), end="")
            return 1
        return 0

    failed = False
    if strict_entries(baseline):
        failed = True
        print(f"{BASELINE.relative_to(ROOT)} holds errors of strict packages, which are never baselined:")
        print("".join(f"  {e}\n" for e in strict_entries(baseline)), end="")
    if strict:
        failed = True
        print(f"errors in strict packages ({', '.join(STRICT)}), which have no baseline:")
        print("".join(f"  {e}\n" for e in strict), end="")
    if new:
        failed = True
        print(f"{sum(new.values())} mypy errors not in {BASELINE.relative_to(ROOT)} (fix them; run mypy for lines):")
        print("".join(f"  {e}\n" for e in sorted(new.elements())), end="")
    if gone:
        failed = True
        print(f"{sum(gone.values())} errors in the baseline no longer occur: it can shrink. Run")
        print("  python3 .ci/mypy_baseline.py --write")
        print("and commit the file. Gone:")
        print("".join(f"  {e}\n" for e in sorted(gone.elements())), end="")
    if not failed:
        print(f"mypy: {sum(current.values())} errors, all in the baseline; none in {', '.join(STRICT)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""The conformance package's commands: check files against profiles/, and generate profiles/.

``validate FILE...``, ``profiles-doc [--check]`` and ``profiles-build [--check]``.
"""

from __future__ import annotations

import json

import click

from adapter.cli.context import ExitCode, exit_with
from adapter.conformance.outcome import has_errors


@click.command("validate")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
def validate(files: tuple[str, ...]) -> None:
    """Validate FHIR JSON FILES against the MMR profiles in profiles/.

    Checks base FHIR R4 structure, then each profile that applies (meta.profile, else chosen by
    resource type and code), cardinalities, fixed and pattern values, required bindings to the
    MMR ValueSets, invariants, and QuestionnaireResponses against the MMR Questionnaires; a
    Bundle's entries are checked one by one. Prints one OperationOutcome (JSON) per file, with
    meta.source naming the file. Exit status 1 if any file has an error, else 0.
    """
    from adapter.conformance.validate import validate_file

    failed = False
    for name in files:
        outcome = validate_file(name)
        outcome = {
            "resourceType": "OperationOutcome",
            "meta": {"source": click.format_filename(name)},
            **{k: v for k, v in outcome.items() if k != "resourceType"},
        }
        click.echo(json.dumps(outcome, ensure_ascii=False, indent=2))
        failed = failed or has_errors(outcome)
    exit_with(ExitCode.FAILED if failed else ExitCode.OK)


@click.command("profiles-doc")
@click.option("--check", is_flag=True, help="Write nothing; exit 1 if README.md or an index differs.")
def profiles_doc(check: bool) -> None:
    """Generate profiles/README.md and the package indexes (.index.json) from the JSON files.

    The README tables every profile, code system, value set, concept map, questionnaire, topic
    and example, with what each carries and why, and the package index.
    """
    from adapter.conformance.build.docs import write_docs
    from adapter.conformance.package import profiles_dir

    differing = write_docs(profiles_dir(), check=check)
    for rel in differing:
        click.echo(("drifted: " if check else "wrote: ") + rel)
    exit_with(ExitCode.FAILED if check and differing else ExitCode.OK)


@click.command("profiles-build")
@click.option("--check", is_flag=True, help="Write nothing; exit 1 if any file in profiles/ differs.")
def profiles_build(check: bool) -> None:
    """Regenerate every JSON file of profiles/ from mappings/codes.yaml and the sources, then the docs."""
    from adapter.conformance.build.generate import generate

    differing = generate(check=check)
    for rel in differing:
        click.echo(("drifted: " if check else "wrote: ") + rel)
    exit_with(ExitCode.FAILED if check and differing else ExitCode.OK)

"""MMR adapter: the Swedish multimodal pain rehabilitation referral workflow on FHIR."""

from importlib.metadata import version

# One home for the version: pyproject.toml's, as installed (the package is always installed, editable
# in development and in the image). The CLI's --version, the FHIR clients' User-Agent and the API's
# OpenAPI version read it here. Not the conformance package's version (profiles/, canonical URLs):
# that changes when the profiles do, not when the code does.
__version__ = version("mmr-adapter")

"""MMR adapter: the Swedish multimodal pain rehabilitation referral workflow on FHIR."""

__version__ = "0.1.0"

"""Talking FHIR: the HTTP client, outbound authentication and OperationOutcome helpers."""

"""Notification intake: the HTTP edge where FHIR servers tell the adapter that something changed."""

"""Flow: the FHIR record turned into tables and figures.

``viewdef.py`` runs SQL on FHIR v2 ViewDefinitions (the HL7 standard for tabular views of FHIR),
generic: it knows FHIR and FHIRPath, nothing of MMR; the views it runs are data.
"""

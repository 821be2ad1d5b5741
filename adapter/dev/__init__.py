"""Development only: the sandbox FHIR server, the HAPI fixture and the demo.

Never imported by the running adapter (a test that reads the imports holds it so): a production
install needs neither ``sekmet-fhir`` nor Java.
"""

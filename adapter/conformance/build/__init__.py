"""Build time: what generates ``profiles/`` from ``mappings/`` and the sources here, and its docs.

The running adapter reads ``profiles/`` through ``adapter.conformance``; nothing at run time
imports this package (a test holds it so).
"""

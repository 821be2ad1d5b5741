"""The sources of ``profiles/``: Python definitions plus ``mappings/codes.yaml``.

The canonical base is read from codes.yaml (``canonical_base``) and nowhere else; every URL below
is built from it, so changing the base and regenerating moves the whole package.
"""

"""Which certificate authorities outbound HTTPS trusts (the FHIR server and the OAuth token endpoint).

By default the public CAs bundled with certifi. A region's private CA is given the OpenSSL way:
``SSL_CERT_FILE`` (a PEM bundle) and/or ``SSL_CERT_DIR`` (a hashed directory, ``c_rehash``). When
either is set, the context is built from them and only them, whatever the httpx version does.
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path

CA_VARIABLES = ("SSL_CERT_FILE", "SSL_CERT_DIR")


def ca_problem() -> str | None:
    """One line naming a CA variable that points at nothing, or None."""
    cafile, capath = os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR")
    if cafile and not Path(cafile).is_file():
        return f"SSL_CERT_FILE: {cafile} is not a file"
    if capath and not Path(capath).is_dir():
        return f"SSL_CERT_DIR: {capath} is not a directory"
    try:
        verify()
    except ssl.SSLError as exc:
        return f"SSL_CERT_FILE/SSL_CERT_DIR: cannot load the certificates ({exc.reason or exc})"
    return None


def verify() -> ssl.SSLContext | bool:
    """What to pass as httpx's ``verify``: a context trusting the private CA if one is set, else True."""
    cafile, capath = os.environ.get("SSL_CERT_FILE") or None, os.environ.get("SSL_CERT_DIR") or None
    if cafile is None and capath is None:
        return True
    return ssl.create_default_context(cafile=cafile, capath=capath)

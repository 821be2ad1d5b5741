"""Importable test helpers: the real parts as processes (``stack``), HAPI's notification bodies
(``shapes``), referrals on the server (``referrals``, ``e2e_referrals``), the pure workflow's builders
(``workflow``), unrelated traffic (``noise``) and the fakes for faults a real part cannot produce on
demand (``faults``). Fixtures stay in ``tests/conftest.py``.
"""

"""The conformance package: profiles, terminology, questionnaires and topics in ``profiles/``.

``sources`` builds the package from ``mappings/codes.yaml`` and a few Python definitions,
``validate`` holds resources to it, ``docs`` documents it and ``install`` puts it on a server.
"""

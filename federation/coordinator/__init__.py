"""The coordinator's room: what runs studies across the sites.

The study loop, strategies and range phase, the ServerApps (simulation and deployed),
analytics collection, the SuperLink process, TLS certificates, the node registry, run
and query files; ``workbench coordinator ...``. Never imports ``federation.site``.
"""

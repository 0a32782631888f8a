"""Both rooms together on one machine: the study and the analytics on Flower's
simulation engine (``simulation``, ``analytics_simulation``), and a whole federation
of real processes on loopback (``loopback``).

The only package of ``federation`` that imports both ``site`` and ``coordinator``;
nothing in ``federation`` imports it (``workbench``, tests and benchmarks do).
"""

"""The one-run privacy audit of the site's DP-SGD: both engines at a claimed epsilon of 2,
and deliberately broken engines (noise off, clipping off) that it must catch.

``python -m benchmarks.privacy_audit`` (or ``.run``) writes ``RESULTS.md`` beside this file.
"""

"""python -m benchmarks.privacy_audit: the same as ``python -m benchmarks.privacy_audit.run``."""

from benchmarks.privacy_audit.run import main

raise SystemExit(main())

"""Settings a user may switch, in one place.

>>> from workbench import settings
>>> settings.progress = False   # no progress bars anywhere
"""

from __future__ import annotations

import os

#: Show tqdm progress bars for long work (training rounds, benchmarks).
progress: bool = os.environ.get("WORKBENCH_PROGRESS", "1") not in ("0", "false", "no")

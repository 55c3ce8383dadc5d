"""The benchmark scripts import each other as scripts (`import benchlib`): put their directory on sys.path
for the tests beside them, as running a script there does."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)

"""Imported first by every bench script (``import support.path_guard``): ``bench/queue.py``
(the name the queue issue asks for) would otherwise shadow the standard library's ``queue``
for scripts run from bench/, and anything that imports it (pyarrow, concurrent.futures)
would break."""

import sys
from pathlib import Path

_BENCH = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _BENCH]

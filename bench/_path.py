"""Imported first by every bench script: ``bench/queue.py`` (the name the queue issue asks
for) would otherwise shadow the standard library's ``queue`` for scripts run from bench/,
and anything that imports it (pyarrow, concurrent.futures) would break."""

import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import sys
from pathlib import Path

# The cluster tests use the git remote helpers of tests/sources.
_SOURCES = Path(__file__).resolve().parents[1] / "sources"
if str(_SOURCES) not in sys.path:
    sys.path.insert(0, str(_SOURCES))

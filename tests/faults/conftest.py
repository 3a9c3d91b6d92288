import sys
from pathlib import Path

# The fault tests reuse the daemon-process helpers (tests/scenarios) and the git remote
# helpers (tests/sources); make both importable however the suite is started.
_TESTS = Path(__file__).resolve().parents[1]
for _folder in ("scenarios", "sources"):
    if str(_TESTS / _folder) not in sys.path:
        sys.path.insert(0, str(_TESTS / _folder))

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    """One build cache for the whole session, so the real PyInstaller stub is built once."""
    return tmp_path_factory.mktemp("bundler-cache")


@pytest.fixture(scope="session")
def stub_path(cache_dir):
    """A real PyInstaller one-file stub for this host, built from the current sources."""
    from tests.helpers import bundler

    return Path(bundler("stub", "--cache-dir", cache_dir).stdout.strip())

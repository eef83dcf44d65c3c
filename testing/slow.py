"""Which tests are slow, decided once: a test that builds a real stub, a Debian root, or starts a registry or
containerd is marked `slow` by tests/conftest.py (by its fixtures and its folder), and the helpers that start those
parts call `require()`, which fails a test that got there unmarked. So `pytest -m "not slow"` stays fast, and a
new test cannot forget its mark. Outside pytest (scripts/) nothing is checked."""

import os

UNMARKED = "BUNDLER_TEST_UNMARKED"  # set to the running test's id while it runs without the slow mark


def require(what):
    test = os.environ.get(UNMARKED)
    if test:
        raise AssertionError(
            f"{test} {what} but is not marked slow: give it a fixture of SLOW_FIXTURES in tests/conftest.py, or add "
            "the fixture that starts it there"
        )

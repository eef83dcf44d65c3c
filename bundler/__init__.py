"""bundler: the build side (Python 3.11+)."""

__version__ = "0.1.0"

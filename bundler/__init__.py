"""bundler: the build side (Python 3.11+)."""

"""The bundle format shared by the build side (bundler) and the run side (stub).

Runs on Python 3.9 and imports only the standard library, zstandard and (lazily) requests.
"""

FORMAT_VERSION = 4
"""The version of the bundle format specified in docs/format.md; the payload header and the index carry it."""

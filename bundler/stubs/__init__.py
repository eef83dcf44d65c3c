"""The stub: the PyInstaller build of stub/, portable ones in Debian roots of each architecture."""

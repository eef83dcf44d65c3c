"""The build's output set on disk and on media: the executable, its parts, its .sha256; split and copy."""

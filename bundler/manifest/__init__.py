"""bundle.toml: the data model (model.py) and its reader and validator (reader.py).

The schema is documented key by key in docs/manifest.md.
"""

from bundler.manifest.reader import load_manifest

__all__ = ["load_manifest"]

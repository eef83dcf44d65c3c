#!/usr/bin/env python3
"""The golden test vector of the bundle format (docs/format.md): a small payload section made by the real writer.

    .venv/bin/python scripts/golden.py            # (re)write tests/golden/payload-v<N>.bin and .index.json
    .venv/bin/python scripts/golden.py --check    # exit 1 if the committed files are not what the writer makes now

What the vectors hold, and how to add an index field: testing/golden.py.
"""

import argparse
import hashlib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from testing.golden import GOLDEN_DIR, SPLIT_VECTOR, VECTOR, wanted  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="compare with the committed files, write nothing")
    args = parser.parse_args(argv)
    made = wanted()
    if args.check:
        differ = [p for p, data in made.items() if not p.exists() or p.read_bytes() != data]
        for path in made:
            print(
                "{}: {}".format(
                    path.relative_to(ROOT), "DIFFERS from what the writer makes" if path in differ else "up to date"
                )
            )
        return 1 if differ else 0
    GOLDEN_DIR.mkdir(parents=True, exist_ok=True)
    for path, data in made.items():
        path.write_bytes(data)
    for path in (VECTOR, SPLIT_VECTOR):
        data = made[path]
        print(f"{path.relative_to(ROOT)}: {len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()}")
    print("put those sha256s in docs/format.md (above, and in section 3.6)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

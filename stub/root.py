"""The install root's layout, as docs/format.md section 8 ("On the device") specifies it: every name under <root>
is spelled here and nowhere else, and every other module asks for its paths here."""

import os

from payload.rules import IMAGES_DIR, is_sha256

LOCK = ".lock"  # exclusive flock: install, move `current`, pull, pin, gc
LOCKS_DIR = ".locks"  # a shared flock per version, held by every process that runs it
MARKER = ".bundle-installed"  # in a version dir, written last: without it the version is not installed
INDEX_FILE = ".bundle-index.json"  # in a version dir: the version's index bytes
START_RECORD = ".bundle-start"  # in a version dir: what the launcher needs to start it alone (stub/start_record.py)
OWNER = ".bundle-name"  # the name of the bundle that first installed in this root
CURRENT = "current"
PREVIOUS = "previous"
PINS_DIR = ".trusted-keys"  # pinned public keys
# Outside every root: keys an operator pins for every root a start as root uses (read, never written by a start)
SHARED_PINS_DIR = "/etc/bundler/trusted-keys"
KEPT_DIR = ".executables"  # bundle files an update replaced, named by bundle id
PULLS_DIR = ".pulls"  # partly pulled blobs, resumed with Range, and archives until they are verified
PULL_LOCK = ".pull.lock"  # exclusive flock of the one puller of this root; it holds the puller's PID
PULL_LOG = ".pull.log"  # what the background puller says (it has no terminal)
IMAGES_STATE = ".state"  # in a version's images dir: one line per image, ready or not (docs/images.md)
UPDATES_DIR = ".updates"  # blobs of updates in progress, by new bundle id
PROBATION = ".probation"  # present while `current` is on probation: its id, the one before, starts counted
UPDATE_LOG = ".update-log"  # the last update, rollback, mark and health check, with their time and reason
REFUSED_DIR = ".rolled-back"  # a record per bundle id rolled back on its own: updates to it need --bundle-force
HEALTH_LOCK = ".health.lock"  # exclusive flock of the one health checker of this root
HEALTH_LOG = ".health.log"  # what the health checker says (it has no terminal)
DATA_DIR = "data"  # state that outlives versions


def default_root(name, environ):
    """--bundle-dir aside: $BUNDLE_DIR, else /var/lib/<name> as root, else the user's data directory."""
    if environ.get("BUNDLE_DIR"):
        return environ["BUNDLE_DIR"]
    if os.geteuid() == 0:
        return os.path.join("/var/lib", name)
    base = environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(base, name)


def version_dirs(root, installed_only=False):
    """The bundle ids under `root` that are version directories (named by an id, not a symlink), sorted; with
    `installed_only`, those whose install completed (its marker). OSError when `root` cannot be listed."""
    found = []
    for name in sorted(os.listdir(root)):
        path = os.path.join(root, name)
        if not is_sha256(name) or os.path.islink(path):
            continue
        if os.path.isfile(os.path.join(path, MARKER)) if installed_only else os.path.isdir(path):
            found.append(name)
    return found


class Installation:
    """Where one bundle version lives on this device."""

    def __init__(self, root, bundle_id):
        self.root = os.path.abspath(root)
        self.bundle_id = bundle_id
        self.path = os.path.join(self.root, bundle_id)
        self.images = os.path.join(self.path, IMAGES_DIR)
        self.data = os.path.join(self.root, DATA_DIR)

    def is_installed(self):
        return os.path.isfile(os.path.join(self.path, MARKER))

    def index_doc(self):
        """The version's record (its index as installed, parsed), or {} when it has none or it does not parse."""
        from payload import jsondecode

        try:
            with open(os.path.join(self.path, INDEX_FILE), "rb") as f:
                doc = jsondecode.loads(f.read())
        except (OSError, ValueError):
            return {}
        return doc if isinstance(doc, dict) else {}

    def version_lock(self):
        return os.path.join(self.root, LOCKS_DIR, self.bundle_id)

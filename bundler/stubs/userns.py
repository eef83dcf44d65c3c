"""Root inside a user namespace, without root on the host: how a non-root build host runs commands in the Debian
roots that mmdebstrap's unshare mode makes.

The namespace maps its root to the calling user and its other ids to the user's subordinate range (/etc/subuid,
/etc/subgid), set up by the setuid helpers newuidmap and newgidmap (package uidmap):

    inside 0          -> the user's own uid (so the user owns, reads and deletes what root makes in the root)
    inside 1..65535   -> subuid start + 1 .. start + 65535 (the root's system users: _apt, nobody, ...)

Run as a program (`python3 userns.py SUBUID SUBGID COUNT -- COMMAND...`), it makes the namespace, maps it and
execs COMMAND there as its root; it imports only the standard library so it starts without the project on the path.
"""

import ctypes
import os
import signal
import subprocess
import sys

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
PR_SET_PDEATHSIG = 1
IDS = 65536  # the root's ids: 0..65535 (nobody is 65534)


def maps(own, start, count):
    """newuidmap/newgidmap triples (inside, outside, count) for a subordinate range of `count` ids at `start`."""
    return [(0, own, 1), (1, start + 1, min(count, IDS) - 1)]


def command(subuid, subgid, argv):
    """The command line that runs `argv` as root in a fresh user and mount namespace (subuid, subgid: (start,
    count) of the user's ranges)."""
    return [
        sys.executable,
        "-S",
        os.path.abspath(__file__),
        f"{subuid[0]}:{subuid[1]}",
        f"{subgid[0]}:{subgid[1]}",
        "--",
    ] + list(argv)


def _libc():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.unshare.argtypes = [ctypes.c_int]
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    return libc


def _set_map(tool, pid, triples):
    args = [tool, str(pid)] + [str(n) for triple in triples for n in triple]
    done = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if done.returncode != 0:
        raise OSError("{} failed: {}".format(tool, done.stdout.strip() or f"exit {done.returncode}"))


def main(args):
    subuid, subgid = [tuple(int(n) for n in a.split(":")) for a in args[:2]]
    argv = args[3:]
    libc = _libc()
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(ready_r)
            os.close(go_w)
            if libc.unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0:
                error = ctypes.get_errno()
                sys.stderr.write(f"userns: unshare(CLONE_NEWUSER) failed: {os.strerror(error)}\n")
                os._exit(126)
            os.write(ready_w, b"u")
            if os.read(go_r, 1) != b"m":
                os._exit(126)
            os.setresgid(0, 0, 0)
            try:
                os.setgroups([])
            except OSError:
                pass
            os.setresuid(0, 0, 0)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # after setresuid, which clears it
            if os.getppid() == 1:
                os._exit(126)
            os.execvp(argv[0], argv)
        except BaseException as exc:  # noqa: B036 - nothing may escape a forked child
            sys.stderr.write(f"userns: {exc}\n")
        os._exit(127)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the child gets Ctrl-C too (same process group) and decides
    os.close(ready_w)
    os.close(go_r)
    try:
        if os.read(ready_r, 1) == b"u":
            _set_map("newuidmap", pid, maps(os.getuid(), *subuid))
            _set_map("newgidmap", pid, maps(os.getgid(), *subgid))
            os.write(go_w, b"m")
    except OSError as exc:
        sys.stderr.write(f"userns: {exc}\n")
        os.kill(pid, signal.SIGKILL)
    os.close(go_w)
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except InterruptedError:
            continue
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

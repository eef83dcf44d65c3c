"""The architecture of the machine bundler runs on, named as bundles name it (payload/arches.py)."""

import platform

from payload import arches


def host_arch():
    machine = platform.machine()
    return arches.from_uname(machine) or machine

"""Architecture names as bundles use them."""

import platform

from payload.index import ARCHES

_MACHINES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64",
             "armv7l": "arm", "armv6l": "arm", "riscv64": "riscv64"}


def host_arch():
    return _MACHINES.get(platform.machine(), platform.machine())


__all__ = ["ARCHES", "host_arch"]

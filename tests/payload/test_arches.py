"""payload/arches.py: the one architecture table, and the places that used to keep their own copy."""

import pytest

from payload import arches
from payload.oci.reference import parse_platform, platform_for_arch


def test_names_and_aliases_never_collide():
    words = [a.name for a in arches.TABLE] + [alias for a in arches.TABLE for alias in a.aliases]
    assert len(words) == len(set(words))
    assert arches.NAMES == ("amd64", "arm64", "arm", "riscv64")


@pytest.mark.parametrize("arch", arches.TABLE, ids=lambda a: a.name)
def test_every_row_answers_every_question(arch):
    assert arches.get(arch.name) is arch
    assert all(arches.canonical(alias) == arch.name for alias in arch.aliases + (arch.name,))
    assert arches.from_elf(arch.elf_machine, arch.elf_64bit) == arch.name
    assert arches.from_elf(arch.elf_machine, not arch.elf_64bit) is None
    assert all(arches.from_uname(m) == arch.name for m in arch.machines)
    assert platform_for_arch(arch.name) == parse_platform(arch.platform) == platform_for_arch(arch.aliases[0])


def test_unknown_words():
    assert arches.get("aarch64") is None  # an alias is not a name
    assert arches.canonical("mips") is None and arches.from_uname("mips") is None

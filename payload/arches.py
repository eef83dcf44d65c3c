"""The architectures a bundle can be built for: ONE table, used by the manifest, the CLI, the ELF reader, the
registry client and the device (docs/format.md, section 7)."""


class Arch:
    """One row of TABLE.

    name: what bundles, manifests and the CLI call it; elf_machine, elf_64bit: ELF e_machine and class of its
    executables; platform: the OCI platform its images are pulled for, os/arch[/variant]; aliases: names other
    tools use for it, accepted where a hint is given, never stored; machines: what `uname -m` says on such a machine.

    A plain class: collections.namedtuple (and typing.NamedTuple more so) adds its imports and a compile to every
    start of a bundle, a measurable share of one under qemu (docs/benchmarks.md)."""

    __slots__ = ("name", "elf_machine", "elf_64bit", "platform", "aliases", "machines")

    def __init__(self, name, elf_machine, elf_64bit, platform, aliases, machines):
        self.name, self.elf_machine, self.elf_64bit = name, elf_machine, elf_64bit
        self.platform, self.aliases, self.machines = platform, aliases, machines

    def __repr__(self):
        return f"Arch({self.name!r})"


TABLE = (
    Arch("amd64", 62, True, "linux/amd64", ("x86_64", "x86-64", "x64"), ("x86_64", "amd64")),
    Arch("arm64", 183, True, "linux/arm64", ("aarch64", "armv8"), ("aarch64", "arm64")),
    Arch("arm", 40, False, "linux/arm/v7", ("armhf", "armv7", "armv7l", "arm32"), ("armv7l", "armv6l")),
    Arch("riscv64", 243, True, "linux/riscv64", ("riscv",), ("riscv64",)),
)
NAMES = tuple(arch.name for arch in TABLE)
_BY_NAME = dict((arch.name, arch) for arch in TABLE)


def get(name):
    """The row of the architecture called `name` (its own name, never an alias), or None."""
    return _BY_NAME.get(name)


def canonical(word):
    """The architecture `word` names, by its name or one of its aliases (`aarch64` -> `arm64`), or None."""
    if word in _BY_NAME:
        return word
    return next((arch.name for arch in TABLE if word in arch.aliases), None)


def from_elf(machine, is_64bit):
    """The architecture of an ELF file with this e_machine and class, or None."""
    return next((a.name for a in TABLE if a.elf_machine == machine and a.elf_64bit == is_64bit), None)


def from_uname(machine):
    """The architecture of a machine whose `uname -m` says `machine`, or None."""
    return next((arch.name for arch in TABLE if machine in arch.machines), None)

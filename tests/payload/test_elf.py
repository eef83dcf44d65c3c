"""payload/elf.py on real ELF files, checked with binutils (readelf, objcopy) rather than with our own parser.

Samples: /bin/true with a `pydata` section added by objcopy (the way PyInstaller adds it), the same file
relabelled as AArch64, a real i386 program built with `as --32`/`ld`, and big-endian ELF32/ELF64 files
written by objcopy; the slow test uses a real PyInstaller one-file program.
"""

import hashlib
import io
import os
import random
import re
import shutil
import struct
import subprocess
import sys
from collections import namedtuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from payload.elf import elf_machine, find_section, insert_section
from payload.errors import BundleError, HostError, IntegrityError, UsageError

Section = namedtuple("Section", "index name type offset size flags link info align")

# readelf's "Machine:" text -> what elf_machine must answer.
READELF_MACHINES = {
    "Advanced Micro Devices X86-64": "amd64",
    "AArch64": "arm64",
    "Intel 80386": "i386",
    "None": "machine-0",
}
# objcopy input target per sample; the host objcopy does not know AArch64 but reads it as generic elf64-little.
OBJCOPY_TARGETS = {
    "amd64": None,
    "arm64": "elf64-little",
    "i386": None,
    "elf32-big": "elf32-big",
    "elf64-big": "elf64-big",
}
KINDS = sorted(OBJCOPY_TARGETS)
I386_SOURCE = """
.globl _start
.text
_start:
  movl $4, %eax
  movl $1, %ebx
  movl $msg, %ecx
  movl $len, %edx
  int $0x80
  movl $1, %eax
  movl $0, %ebx
  int $0x80
.section .rodata
msg: .ascii "hello32\\n"
len = . - msg
"""


def run(cmd, **kwargs):
    done = subprocess.run([str(part) for part in cmd], capture_output=True, text=True, check=False, **kwargs)
    assert done.returncode == 0, f"{cmd} failed: {done.stderr}"
    return done


def readelf(*args):
    """readelf's output; any warning means the file is inconsistent."""
    done = run(["readelf", "-W", *args])
    assert done.stderr == "", done.stderr
    return done.stdout


def readelf_sections(path):
    sections = []
    for line in readelf("-S", path).splitlines():
        match = re.match(r"^\s*\[\s*(\d+)\]\s(.*)$", line)
        if not match:
            continue
        index, tokens = int(match.group(1)), match.group(2).split()
        if index == 0:
            tokens.insert(0, "")
        name, kind, _addr, offset, size, _entsize = tokens[:6]
        flags = tokens[6] if len(tokens) == 10 else ""
        link, info, align = (int(token) for token in tokens[-3:])
        sections.append(Section(index, name, kind, int(offset, 16), int(size, 16), flags, link, info, align))
    return sections


def by_name(sections):
    return {section.name: section for section in sections}


def readelf_machine(path):
    return re.search(r"Machine:\s+(.*)", readelf("-h", path)).group(1).strip()


def read_at(path, offset, size):
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(size)


def write_random(path, size, seed):
    rng = random.Random(seed)
    with open(path, "wb") as f:
        while size:
            chunk = min(size, 1 << 20)
            f.write(rng.randbytes(chunk))
            size -= chunk
    return path


def add_pydata(src, dst, pydata, input_target=None):
    target = ["-I", input_target, "-O", input_target] if input_target else []
    run(
        [
            "objcopy",
            *target,
            "--add-section",
            f"pydata={pydata}",
            "--set-section-flags",
            "pydata=noload,readonly",
            src,
            dst,
        ]
    )


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    """kind -> (path of an ELF with a pydata section, the pydata bytes)."""
    work = tmp_path_factory.mktemp("elf-samples")
    pydata = write_random(work / "pydata.bin", 20_011, seed=1)
    made = {}
    add_pydata("/bin/true", work / "amd64", pydata)
    made["amd64"] = work / "amd64"

    arm64 = work / "arm64"
    shutil.copyfile(work / "amd64", arm64)
    with open(arm64, "r+b") as f:
        f.seek(18)  # e_machine, little-endian u16
        f.write(struct.pack("<H", 183))
    made["arm64"] = arm64

    if shutil.which("as") and shutil.which("ld"):
        (work / "hello32.s").write_text(I386_SOURCE)
        run(["as", "--32", work / "hello32.s", "-o", work / "hello32.o"])
        run(["ld", "-m", "elf_i386", "-o", work / "hello32", work / "hello32.o"])
        add_pydata(work / "hello32", work / "i386", pydata)
        made["i386"] = work / "i386"

    for kind in ("elf32-big", "elf64-big"):
        # An ET_REL file whose .symtab and .strtab follow pydata: they must be renumbered.
        run(
            [
                "objcopy",
                "-I",
                "binary",
                "-O",
                kind,
                "--add-section",
                f"pydata={pydata}",
                "--set-section-flags",
                "pydata=noload,readonly",
                pydata,
                work / kind,
            ]
        )
        made[kind] = work / kind
    return made, pydata.read_bytes()


@pytest.fixture
def sample(samples, request, tmp_path):
    made, pydata = samples
    if request.param not in made:
        pytest.skip(reason=f"cannot build a {request.param} sample here (no as/ld)")
    path = tmp_path / request.param
    shutil.copy2(made[request.param], path)
    return request.param, path, pydata


@pytest.fixture(scope="module")
def content(tmp_path_factory):
    return write_random(tmp_path_factory.mktemp("content") / "content.bin", 100_003, seed=2)


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


@pytest.mark.parametrize("sample", KINDS, indirect=True)
def test_find_section_agrees_with_readelf(sample):
    _, path, _ = sample
    with open(path, "rb") as f:
        for section in readelf_sections(path)[1:]:
            if section.type != "NOBITS":
                assert find_section(f, section.name) == (section.offset, section.size), section.name
        assert find_section(f, "no-such-section") is None
        assert elf_machine(f) == READELF_MACHINES[readelf_machine(path)]


@pytest.mark.parametrize("sample", KINDS, indirect=True)
def test_insert_places_the_section_before_pydata_and_moves_the_rest(sample, content, tmp_path):
    kind, src, pydata = sample
    dst = tmp_path / "out"
    insert_section(src, dst, "bundle", content)
    check_inserted(src, dst, content, pydata, OBJCOPY_TARGETS[kind])


def check_inserted(src, dst, content, pydata, objcopy_target):
    """dst is src with content in a section 'bundle' right before pydata, as binutils see it."""
    old, new = readelf_sections(src), readelf_sections(dst)
    old_names = [s.name for s in old]
    at = old_names.index("pydata")
    assert [s.name for s in new] == old_names[:at] + ["bundle"] + old_names[at:]
    added, moved_pydata = new[at], new[at + 1]
    assert (added.type, added.flags, added.size, added.align) == ("PROGBITS", "", os.path.getsize(content), 16)
    assert added.offset % 16 == 0
    assert old[at].offset <= added.offset and added.offset + added.size <= moved_pydata.offset
    assert read_at(dst, added.offset, added.size) == content.read_bytes()
    assert read_at(dst, moved_pydata.offset, moved_pydata.size) == pydata

    # Every other section keeps its bytes, its alignment and what its link/info fields point at.
    new_by_name = by_name(new)
    for section in old[1:]:
        moved = new_by_name[section.name]
        if section.type != "NOBITS" and section.name != ".shstrtab":
            assert read_at(dst, moved.offset, moved.size) == read_at(src, section.offset, section.size), section.name
        if moved.align > 1 and section.type != "NOBITS":
            assert moved.offset % moved.align == 0, section.name
        assert new[moved.link].name == old[section.link].name, section.name
        if "I" in section.flags or section.type in ("REL", "RELA"):
            assert new[moved.info].name == old[section.info].name, section.name

    word = 8 if "64" in readelf("-h", dst).split("Class:")[1].split()[0] else 4
    assert header_value(dst, "Start of section headers") % word == 0

    # Program headers and symbols are untouched.
    assert readelf("-l", dst) == readelf("-l", src)
    assert readelf("-s", dst) == readelf("-s", src)
    assert readelf_machine(dst) == readelf_machine(src)

    with open(dst, "rb") as f:
        assert find_section(f, "bundle") == (added.offset, added.size)
        assert find_section(f, "pydata") == (moved_pydata.offset, moved_pydata.size)
        assert elf_machine(f) == READELF_MACHINES[readelf_machine(src)]

    # objcopy rewrites its input in place unless it is given an output file: give it a scratch one.
    dumped, scratch = dst.with_name("dumped"), dst.with_name("scratch")
    target = ["-I", objcopy_target] if objcopy_target else []
    run(["objcopy", *target, "--dump-section", f"bundle={dumped}", dst, scratch])
    assert dumped.read_bytes() == content.read_bytes()
    assert os.stat(dst).st_mode == os.stat(src).st_mode


@pytest.mark.parametrize("sample", ["amd64"], indirect=True)
def test_info_links_past_the_new_section_are_renumbered(sample, content, tmp_path):
    _, stub, pydata = sample
    # Make .gnu_debuglink an SHF_INFO_LINK section whose sh_info names .shstrtab, which comes after pydata.
    old = by_name(readelf_sections(stub))
    header = header_value(stub, "Start of section headers") + 64 * old[".gnu_debuglink"].index
    src = patched(stub, tmp_path, [(header + 8, "<Q", 0x40), (header + 0x2C, "<I", old[".shstrtab"].index)])
    assert old["pydata"].index < old[".shstrtab"].index

    insert_section(src, tmp_path / "out", "bundle", content)
    check_inserted(src, tmp_path / "out", content, pydata, None)
    new = readelf_sections(tmp_path / "out")
    linker = by_name(new)[".gnu_debuglink"]
    assert (linker.flags, new[linker.info].name) == ("I", ".shstrtab")


@pytest.mark.parametrize("sample", ["amd64"], indirect=True)
def test_extended_section_numbering_is_kept(sample, content, tmp_path):
    """gABI: e_shnum 0 and e_shstrndx SHN_XINDEX mean section 0's sh_size and sh_link hold the real values."""
    _, stub, pydata = sample
    shoff = header_value(stub, "Start of section headers")
    count, names = header_value(stub, "Number of section headers"), header_value(stub, "string table index")
    src = patched(
        stub,
        tmp_path,
        [(0x3C, "<H", 0), (0x3E, "<H", 0xFFFF), (shoff + 0x20, "<Q", count), (shoff + 0x28, "<I", names)],
    )
    assert f"0 ({count})" in readelf("-h", src) and f"65535 ({names})" in readelf("-h", src)

    insert_section(src, tmp_path / "out", "bundle", content)
    check_inserted(src, tmp_path / "out", content, pydata, None)
    header = readelf("-h", tmp_path / "out")
    assert f"0 ({count + 1})" in header and f"65535 ({names + 1})" in header


@pytest.mark.parametrize("sample", ["elf32-big"], indirect=True)
def test_a_32_bit_elf_refuses_a_payload_past_4_gib(sample, tmp_path):
    _, src, _ = sample
    huge = tmp_path / "huge"
    with open(huge, "wb") as f:
        f.truncate(4 << 30)  # sparse: the size check comes before any byte is copied
    with pytest.raises(UsageError, match="32-bit ELF, which cannot hold a file of"):
        insert_section(src, tmp_path / "out", "bundle", huge)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("sample", ["amd64", "i386"], indirect=True)
def test_program_still_runs_after_insert(sample, content, tmp_path):
    kind, src, _ = sample
    before = subprocess.run([src], capture_output=True, check=False)
    if before.returncode != 0:
        pytest.skip(reason=f"this kernel does not run {kind} programs: {before.stderr!r}")
    dst = tmp_path / "out"
    insert_section(src, dst, "bundle", content)
    after = subprocess.run([dst], capture_output=True, check=False)
    assert (after.returncode, after.stdout) == (0, before.stdout)


@pytest.mark.parametrize("sample", ["amd64"], indirect=True)
def test_empty_content_and_other_alignments(sample, tmp_path):
    _, src, pydata = sample
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    insert_section(src, tmp_path / "a", "bundle", empty, align=4096)
    added = by_name(readelf_sections(tmp_path / "a"))["bundle"]
    assert (added.size, added.align, added.offset % 4096) == (0, 4096, 0)
    moved = by_name(readelf_sections(tmp_path / "a"))["pydata"]
    assert read_at(tmp_path / "a", moved.offset, moved.size) == pydata
    with pytest.raises(UsageError, match="power of two"):
        insert_section(src, tmp_path / "b", "bundle", empty, align=12)
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("sample", KINDS, indirect=True)
@pytest.mark.parametrize("new_size", [0, 1_001, 100_003, 300_007])
def test_replacing_the_section_gives_what_inserting_the_new_content_gives(sample, content, new_size, tmp_path):
    """A bundle split later keeps its stub: the payload section is replaced, smaller or larger (bundler split)."""
    kind, src, pydata = sample
    replacement = write_random(tmp_path / "replacement", new_size, seed=3)
    insert_section(src, tmp_path / "once", "bundle", content)
    insert_section(tmp_path / "once", tmp_path / "replaced", "bundle", replacement, replace=True)
    insert_section(src, tmp_path / "direct", "bundle", replacement)
    assert sha256(tmp_path / "replaced") == sha256(tmp_path / "direct")
    check_inserted(src, tmp_path / "replaced", replacement, pydata, OBJCOPY_TARGETS[kind])


@pytest.mark.parametrize("sample", ["amd64"], indirect=True)
def test_replaced_program_still_runs(sample, content, tmp_path):
    _, src, _ = sample
    before = subprocess.run([src], capture_output=True, check=False)
    small = write_random(tmp_path / "small", 77, seed=4)
    insert_section(src, tmp_path / "once", "bundle", content)
    insert_section(tmp_path / "once", tmp_path / "replaced", "bundle", small, replace=True)
    after = subprocess.run([tmp_path / "replaced"], capture_output=True, check=False)
    assert (after.returncode, after.stdout) == (before.returncode, before.stdout)


@pytest.mark.parametrize("sample", ["amd64"], indirect=True)
def test_a_section_that_exists_already_is_refused(sample, content, tmp_path):
    _, src, _ = sample
    insert_section(src, tmp_path / "once", "bundle", content)
    with pytest.raises(UsageError, match="already has a section 'bundle'.*fresh stub"):
        insert_section(tmp_path / "once", tmp_path / "twice", "bundle", content)
    assert not (tmp_path / "twice").exists()


def test_a_stub_without_pydata_is_refused(content, tmp_path):
    with pytest.raises(UsageError, match="no 'pydata' section: it is not a PyInstaller one-file ELF"):
        insert_section("/bin/true", tmp_path / "out", "bundle", content)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("sample", ["amd64"], indirect=True)
def test_a_section_inside_a_loaded_segment_is_refused(sample, content, tmp_path):
    _, src, _ = sample
    dst = tmp_path / "out"
    dst.write_bytes(b"the caller's temp file")
    with pytest.raises(UsageError, match=r"section '\.text' lies inside segment \d+, which is loaded"):
        insert_section(src, dst, "bundle", content, before=".text")
    assert dst.read_bytes() == b"the caller's temp file"  # checks fail before anything is written


@pytest.mark.parametrize("sample", ["elf64-big"], indirect=True)
def test_symbols_that_would_be_renumbered_are_refused(sample, content, tmp_path):
    _, src, _ = sample
    assert re.search(r"GLOBAL DEFAULT\s+1 ", readelf("-s", src))  # symbols point at .data, section 1
    with pytest.raises(UsageError, match=r"\.symtab refers to sections from '\.data' on"):
        insert_section(src, tmp_path / "out", "bundle", content, before=".data")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("sample", ["amd64"], indirect=True)
def test_inputs_are_never_overwritten(sample, content, tmp_path):
    _, src, _ = sample
    digest = sha256(src)
    for dst in (src, content):
        with pytest.raises(UsageError, match="would overwrite an input"):
            insert_section(src, dst, "bundle", content)
    assert sha256(src) == digest


@pytest.mark.parametrize("sample", ["amd64"], indirect=True)
def test_unreadable_inputs_are_usage_errors(sample, content, tmp_path):
    _, src, _ = sample
    with pytest.raises(UsageError, match="cannot read section content .*missing"):
        insert_section(src, tmp_path / "out", "bundle", tmp_path / "missing")
    with pytest.raises(UsageError, match="cannot read stub .*missing"):
        insert_section(tmp_path / "missing", tmp_path / "out", "bundle", content)
    with pytest.raises(IntegrityError, match="not a valid ELF file"):
        insert_section(content, tmp_path / "out", "bundle", content)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("sample", ["amd64"], indirect=True)
def test_a_full_disk_is_a_host_error_and_leaves_nothing(sample, tiny_tmpfs, tmp_path):
    _, src, _ = sample
    big = write_random(tmp_path / "big", 3 << 20, seed=3)
    dst = tiny_tmpfs / "out"
    with pytest.raises(HostError, match="cannot write .*out: No space left on device; check free space"):
        insert_section(src, dst, "bundle", big)
    assert os.listdir(tiny_tmpfs) == []


def patched(path, tmp_path, changes):
    """A copy of path with (offset, struct format, value) changes applied."""
    data = bytearray(path.read_bytes())
    for offset, fmt, value in changes:
        struct.pack_into(fmt, data, offset, value)
    out = tmp_path / "patched"
    out.write_bytes(bytes(data))
    return out


def header_value(path, label):
    return int(re.search(label + r":\s+(\d+)", readelf("-h", path)).group(1))


def damaged_variants(src, tmp_path):
    """name -> file, for headers that no ELF reader should trust. Field offsets are those of an ELF64 header."""
    shoff = header_value(src, "Start of section headers")
    count = header_value(src, "Number of section headers")
    pydata = by_name(readelf_sections(src))["pydata"]
    size = os.path.getsize(src)
    data = src.read_bytes()
    variants = {
        "empty": b"",
        "magic only": b"\x7fELF",
        "garbage": random.Random(4).randbytes(4096),
        "cut in half": data[: size // 2],
        "cut inside the header": data[:40],
        "cut inside the section table": data[: shoff + 100],
        "bad class": data[:4] + b"\x07" + data[5:],
        "bad byte order": data[:5] + b"\x09" + data[6:],
    }
    for name, change in {
        "section table past the end": (0x28, "<Q", size + 64),
        "section table overflows": (0x28, "<Q", 2**64 - 8),
        "name table index out of range": (0x3E, "<H", count),
        "wrong section header size": (0x3A, "<H", 40),
        "too many sections": (0x3C, "<H", 0xFFFE),
        "name outside the name table": (shoff + 64 * pydata.index, "<I", 0xFFFF),
        "pydata past the end": (shoff + 64 * pydata.index + 0x18, "<Q", size - 10),
    }.items():
        variants[name] = bytes(patched(src, tmp_path, [change]).read_bytes())
    return variants


@pytest.mark.parametrize("sample", ["amd64"], indirect=True)
def test_damaged_files_raise_integrity_errors(sample, tmp_path):
    _, src, _ = sample
    for name, data in damaged_variants(src, tmp_path).items():
        path = tmp_path / name.replace(" ", "-")
        path.write_bytes(data)
        with open(path, "rb") as f, pytest.raises(IntegrityError) as raised:
            find_section(f, "pydata")
        message = str(raised.value)
        assert "\n" not in message and str(path) in message and "copy it again" in message, (name, message)
        with pytest.raises((IntegrityError, UsageError)):
            insert_section(path, tmp_path / "out", "bundle", src)
        assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("sample", ["amd64"], indirect=True)
def test_find_section_reads_only_headers(sample, tmp_path, content):
    """It runs at every start of the stub: a few small reads, never the payload."""
    _, src, _ = sample
    stub = tmp_path / "stub"
    insert_section(src, stub, "bundle", write_random(tmp_path / "big", 8 << 20, seed=5))

    class CountingFile(io.FileIO):  # wraps a real file, only to count what is read
        reads = 0
        bytes_read = 0

        def read(self, size=-1):
            data = super().read(size)
            CountingFile.reads += 1
            CountingFile.bytes_read += len(data)
            return data

    with CountingFile(str(stub), "rb") as f:
        assert find_section(f, "bundle")[1] == 8 << 20
    assert CountingFile.reads <= 4 and CountingFile.bytes_read < 8192


@pytest.mark.parametrize("kind", ["elf64-big", "elf32-big"])
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_damaged_header_is_an_integrity_error_or_a_clean_answer(samples, kind, tmp_path, data):
    src = samples[0][kind]
    original = src.read_bytes()
    shoff = header_value(src, "Start of section headers")
    # Damage the ELF header, the section header table or the name table: the parts the parser trusts.
    regions = [(0, 64), (shoff, len(original)), (len(original) - 120, len(original))]
    damaged = bytearray(original)
    for _ in range(data.draw(st.integers(1, 6))):
        low, high = data.draw(st.sampled_from(regions))
        damaged[data.draw(st.integers(low, high - 1))] = data.draw(st.integers(0, 255))
    damaged = bytes(damaged[: data.draw(st.integers(0, len(damaged)))]) if data.draw(st.booleans()) else bytes(damaged)
    try:
        find_section(io.BytesIO(damaged), "pydata")
        elf_machine(io.BytesIO(damaged))
    except IntegrityError as error:
        assert "\n" not in str(error)
    path, content = tmp_path / "damaged", tmp_path / "content"
    path.write_bytes(damaged)
    content.write_bytes(b"payload")
    try:
        insert_section(path, tmp_path / "out", "bundle", content)
    except BundleError:
        assert not (tmp_path / "out").exists()
    finally:
        if (tmp_path / "out").exists():
            os.unlink(tmp_path / "out")


@pytest.fixture(scope="session")
def pyinstaller_hello(tmp_path_factory):
    work = tmp_path_factory.mktemp("pyinstaller-hello")
    (work / "hello.py").write_text("import sys\nprint('hello from the stub', sys.argv[1:])\n")
    run(
        [
            sys.executable,
            "-m",
            "PyInstaller",
            "--onefile",
            "--strip",
            "--noconfirm",
            "--log-level",
            "WARN",
            "--distpath",
            work / "dist",
            "--workpath",
            work / "build",
            "--specpath",
            work,
            work / "hello.py",
        ],
        cwd=work,
    )
    return work / "dist" / "hello"


@pytest.mark.slow
def test_real_pyinstaller_stub_with_50_mb_section_still_runs(pyinstaller_hello, tmp_path):
    content = write_random(tmp_path / "content", 50 << 20, seed=6)
    dst = tmp_path / "app"
    insert_section(pyinstaller_hello, dst, "bundle", content)

    sections = readelf_sections(dst)
    names = [s.name for s in sections]
    assert names.index("bundle") + 1 == names.index("pydata")
    added = by_name(sections)["bundle"]
    assert added.size == 50 << 20
    with open(dst, "rb") as f:
        assert find_section(f, "bundle") == (added.offset, added.size)
    run(["objcopy", "--dump-section", f"bundle={tmp_path / 'dumped'}", dst, tmp_path / "scratch"])
    assert sha256(tmp_path / "dumped") == sha256(content)

    done = run([dst, "a", "b c"])
    assert done.stdout == "hello from the stub ['a', 'b c']\n"


@pytest.mark.parametrize("sample", KINDS, indirect=True)
def test_stub_sha256_is_the_stubs_whatever_the_payload_and_names_damage_around_it(sample, tmp_path):
    """Two files of one stub with payloads of other sizes give one stub_sha256, and a file of another stub (one
    byte of pydata changed) another; a nonzero byte in the padding between the payload and pydata (which no
    piece covers) is refused, as a section table that does not follow the sections."""
    from payload.outside import stub_sha256

    kind, src, _ = sample
    small, large = write_random(tmp_path / "small", 1_001, seed=3), write_random(tmp_path / "large", 70_017, seed=4)
    one, two = tmp_path / "one", tmp_path / "two"
    insert_section(src, one, "bundle", small)
    insert_section(src, two, "bundle", large)
    digests = []
    for path in (one, two):
        with open(path, "rb") as f:
            digests.append(stub_sha256(f))
    assert digests[0] == digests[1]

    with open(two, "rb") as f:
        bundle, (pydata_offset, _) = find_section(f, "bundle"), find_section(f, "pydata")
    other = tmp_path / "other"
    shutil.copy(two, other)
    data = bytearray(other.read_bytes())
    data[pydata_offset] ^= 1
    other.write_bytes(bytes(data))
    with open(other, "rb") as f:
        assert stub_sha256(f) != digests[1]

    padding = bundle[0] + bundle[1]
    if padding < pydata_offset:  # alignment left a gap after the payload
        data = bytearray(two.read_bytes())
        data[padding] = 0xFF
        other.write_bytes(bytes(data))
        with open(other, "rb") as f, pytest.raises(IntegrityError, match="not zeros"):
            stub_sha256(f)
    data = bytearray(two.read_bytes())
    header = (0x28, 8) if data[4] == 2 else (0x20, 4)  # e_shoff: 64- or 32-bit
    byteorder = "little" if data[5] == 1 else "big"
    data[header[0] : header[0] + header[1]] = (1).to_bytes(header[1], byteorder)  # the table at the file's start
    other.write_bytes(bytes(data))
    with open(other, "rb") as f, pytest.raises(BundleError):
        stub_sha256(f)

"""Hostile content indexes and encoding tables, on the real frozen stub and on `bundler inspect` / `verify`: deep
JSON nesting, 8 MiB of `{}`, paths at and past the depth limit, too many entries, a tampered encoding table and a
signed content index with one byte changed. Each is exit 3 with one line, nothing installed, and a peak memory far
below what the issue measured (1.98 GB, 520 MB, 227 MB): the limits are checked on the raw bytes before any parse,
and the signature before the index is parsed (docs/format.md, sections 2 and 3.7).

Memory is the peak RSS of the process tree (resource.getrusage(RUSAGE_CHILDREN) in a wrapper process that runs
only the command), never time."""

import json
import os
import sys

import pytest

from testing.faults import SMALL, build, version_dirs, write_project
from testing.helpers import ROOT, bundler, measured
from testing.mutations import HEADER, join_section, read_section, split_section, with_section

CEILING_KB = 200 << 10  # a generous bound: a refusal reads at most the 64 MiB head, and parses far less


@pytest.fixture(scope="module")
def bases(tmp_path_factory, cache_dir, stub_path):
    work = tmp_path_factory.mktemp("hostile")
    bundler("keygen", "--out", work / "release")
    plain = build(write_project(work / "plain", SMALL), cache_dir)
    signed = build(write_project(work / "signed", SMALL), cache_dir, "--sign", work / "release.key")
    return {"plain": read_section(plain), "signed": read_section(signed), "stub": stub_path, "work": work}


def _with_index(bases, base, make_index):
    """The base bundle's section with its content index replaced by make_index(index bytes, index doc); the
    header's sha256s match, the signature block (if any) and the encoding table are kept."""
    _, index_bytes, signature, table_bytes, data = split_section(bases[base])
    return join_section(make_index(index_bytes, json.loads(index_bytes)), signature, table_bytes, data)


def _entries(doc, entries):
    return json.dumps(dict(doc, entries=entries), separators=(",", ":")).encode()


def _nested(index_bytes, doc):
    depth = 200_000
    return index_bytes[:-1] + b',"zz":' + b"[" * depth + b"]" * depth + b"}"


def _braces(index_bytes, doc):
    return b"{}" * (4 << 20)  # 8 MiB


def _deep_paths(index_bytes, doc):
    # Paths at the depth limit (128 components), many of them: the parent checks stay linear.
    entry = {"kind": "file", "mode": 0o644, "size": 0, "sha256": "0" * 64}
    return _entries(doc, [dict(entry, path="a/" * 127 + f"f{n}") for n in range(20_000)])


def _too_deep(index_bytes, doc):
    entry = {"kind": "file", "mode": 0o644, "size": 0, "sha256": "0" * 64}
    return _entries(doc, doc["entries"] + [dict(entry, path="d/" * 2000 + "f")])


def _too_many(index_bytes, doc):
    entry = {"kind": "file", "mode": 0o644, "size": 0, "sha256": "0" * 64}
    return _entries(doc, [dict(entry, path=f"f{n}") for n in range(100_001)])


def _tampered_table(bases, base):
    section = bytearray(bases[base])
    _, index_bytes, signature, table_bytes, _ = split_section(bases[base])
    at = HEADER.size + len(index_bytes) + len(signature) + table_bytes.index(b'"csize":') + len('"csize":')
    section[at] = ord("9") if section[at] != ord("9") else ord("8")  # the header's table sha256 left as it was
    return bytes(section)


def _tampered_signed(bases, base):
    def one_byte(index_bytes, doc):
        return index_bytes.replace(b'"version":"1.0.0"', b'"version":"1.0.1"')

    return _with_index(bases, base, one_byte)


def _signed_braces(bases, base):
    return _with_index(bases, base, _braces)  # the genuine signature block kept over 8 MiB of {}


CASES = {
    "deep JSON nesting": (lambda b, base: _with_index(b, base, _nested), "plain", "nested more than"),
    "8 MiB of {}": (lambda b, base: _with_index(b, base, _braces), "plain", "objects and arrays, more than"),
    "20000 paths at the depth limit": (lambda b, base: _with_index(b, base, _deep_paths), "plain", "bundle index"),
    "a path past the depth limit": (
        lambda b, base: _with_index(b, base, _too_deep),
        "plain",
        "d/d/f' (4001 characters) has more than 128 components",
    ),
    "100001 entries": (lambda b, base: _with_index(b, base, _too_many), "plain", "more than the 100000 allowed"),
    "a tampered encoding table": (_tampered_table, "plain", "encoding table does not match"),
    "a signed content index with one byte changed": (_tampered_signed, "signed", "does not hold"),
    # bundler checks a signature present before it parses (and refuses there); the stub, which cannot afford the
    # signature check on every start, refuses at the limits first: both before any parse.
    "8 MiB of {} under a genuine signature": (
        _signed_braces,
        "signed",
        {"stub": "objects and arrays, more than", "bundler": "does not hold"},
    ),
}


def _expected(case, who):
    expected = CASES[case][2]
    return expected[who] if isinstance(expected, dict) else expected


@pytest.fixture(scope="module")
def hostile(bases):
    made = {}
    for name, (make, base, _) in CASES.items():
        path = bases["work"] / ("hostile-" + "".join(c if c.isalnum() else "-" for c in name))
        made[name] = with_section(bases["stub"], make(bases, base), path)
        os.chmod(made[name], 0o755)
    return made


def _one_line_refusal(code, stderr, rss_kb, expected):
    errors = [line for line in stderr.splitlines() if "error:" in line]
    assert code == 3 and len(errors) == 1 and "Traceback" not in stderr, stderr[-600:]
    assert expected in errors[0] and len(errors[0]) < 600, errors[0]
    print(f"peak RSS {rss_kb} KB: {errors[0][:120]}")
    assert rss_kb < CEILING_KB, f"peak RSS {rss_kb} KB"


@pytest.mark.parametrize("case", list(CASES))
def test_the_frozen_stub_refuses_it_in_one_line_and_bounded_memory(hostile, tmp_path, case):
    root = tmp_path / "root"
    code, stderr, rss_kb = measured([hostile[case], "--bundle-dir", root, "x"], env={"FAULTS_MARK": tmp_path / "ran"})
    _one_line_refusal(code, stderr, rss_kb, _expected(case, "stub"))
    assert version_dirs(root) == [] and not (tmp_path / "ran").exists()


@pytest.mark.parametrize("command", ["inspect", "verify"])
@pytest.mark.parametrize("case", list(CASES))
def test_bundler_inspect_and_verify_refuse_it_in_one_line_and_bounded_memory(hostile, case, command):
    env = {"PYTHONPATH": str(ROOT)}
    code, stderr, rss_kb = measured([sys.executable, "-m", "bundler", command, hostile[case]], env=env)
    _one_line_refusal(code, stderr, rss_kb, _expected(case, "bundler"))

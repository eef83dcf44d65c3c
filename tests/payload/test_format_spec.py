"""docs/format.md against the code: the golden vector (scripts/golden.py) is read by the reader, made again byte
for byte by the writer, carries the spec's version and sha256, and its index validates against the spec's schema
(which allows no field it does not list). So a change to the format cannot go unnoticed by the spec."""

import hashlib
import importlib.util
import io
import json
import re
import tempfile
from pathlib import Path

import pytest

from payload import FORMAT_VERSION, arches
from payload.errors import IntegrityError
from payload.groups import extract_group
from payload.layout import read_payload
from payload.report import verify_all
from payload.signing import required_key, verify_signature

ROOT = Path(__file__).resolve().parents[2]
SPEC = (ROOT / "docs" / "format.md").read_text()


def _golden():
    spec = importlib.util.spec_from_file_location("golden", ROOT / "scripts" / "golden.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


golden = _golden()


def _open_vector():
    data = golden.VECTOR.read_bytes()
    return read_payload(str(golden.VECTOR), io.BytesIO(data), 0, len(data)), data


def test_the_spec_the_code_and_the_vector_name_one_version():
    stated = re.search(r"\*\*Format version: (\d+)\*\*", SPEC)
    assert stated and int(stated.group(1)) == FORMAT_VERSION
    assert golden.VECTOR.name == f"payload-v{FORMAT_VERSION}.bin"
    data = golden.VECTOR.read_bytes()
    assert data[:8] == b"BUNDLER\x00" and int.from_bytes(data[8:12], "little") == FORMAT_VERSION
    assert json.loads(golden.INDEX_JSON.read_text())["format"] == FORMAT_VERSION


def test_the_spec_records_the_vector_it_describes():
    data = golden.VECTOR.read_bytes()
    recorded = re.search(
        rf"`tests/golden/payload-v{FORMAT_VERSION}\.bin` \((\d+) bytes, sha256\s+`([0-9a-f]{{64}})`", SPEC
    )
    assert recorded, "docs/format.md must name the vector, its size and its sha256"
    actual = (len(data), hashlib.sha256(data).hexdigest())
    assert (int(recorded.group(1)), recorded.group(2)) == actual, (
        f"the vector changed: put ({actual[0]} bytes, sha256 {actual[1]}) in docs/format.md, see its section 9"
    )


def test_the_writer_reproduces_the_vector_byte_for_byte():
    section, index_text = golden.build()
    assert section == golden.VECTOR.read_bytes(), "run scripts/golden.py and update docs/format.md"
    assert index_text == golden.INDEX_JSON.read_text()


def test_the_reader_accepts_the_vector_and_every_byte_holds():
    payload, data = _open_vector()
    assert payload.index.to_json() == json.loads(golden.INDEX_JSON.read_text())
    assert payload.bundle_id == hashlib.sha256(data[64 : 64 + len(payload.index_bytes)]).hexdigest()
    assert [len(g.frames) for g in payload.index.groups] == [2, 1]  # the files group is cut in two
    f = io.BytesIO(data)
    assert "ok, 6 entries in 2 group(s) of 3 frame(s) verified" in verify_all(payload, f)
    verify_signature(payload, [required_key(payload)])
    with tempfile.TemporaryDirectory() as dest:
        for group in payload.index.groups:
            extract_group(f, payload.data_offset, group, payload.index.entries_of(group.name), dest)
        for path, mode, content in golden.FILES:
            assert Path(dest, path).read_bytes() == content and Path(dest, path).stat().st_mode & 0o777 == mode
        manifest, config, layer = golden.image_blobs()
        for blob in (manifest, config, layer):
            assert Path(dest, "images/blobs/sha256", hashlib.sha256(blob).hexdigest()).read_bytes() == blob


def test_the_split_vector_is_the_same_bundle_with_its_data_area_in_its_parts():
    data = golden.SPLIT_VECTOR.read_bytes()
    recorded = re.search(
        rf"`tests/golden/payload-v{FORMAT_VERSION}-split\.bin` \((\d+) bytes, sha256\s+`([0-9a-f]{{64}})`", SPEC
    )
    assert recorded and (int(recorded.group(1)), recorded.group(2)) == (len(data), hashlib.sha256(data).hexdigest())
    section, parts, index_text = golden.build_split()
    assert section == data and index_text == golden.SPLIT_INDEX_JSON.read_text()
    assert all((golden.GOLDEN_DIR / name).read_bytes() == part for name, part in parts.items())
    payload = read_payload(str(golden.SPLIT_VECTOR), io.BytesIO(data), 0, len(data))
    index_len, sig_len = int.from_bytes(data[16:24], "little"), int.from_bytes(data[12:16], "little")
    assert 64 + index_len + sig_len == len(data) and len(payload.index.parts) == 3
    whole, _ = _open_vector()
    assert b"".join(parts.values()) == golden.VECTOR.read_bytes()[whole.data_offset :]
    assert payload.index.with_parts(()).to_json() == whole.index.to_json()
    assert "3 parts verified" in verify_all(payload, io.BytesIO(data))
    verify_signature(payload, [required_key(payload)])


def test_a_bundle_of_format_2_is_refused_naming_what_still_reads_it():
    # docs/format.md, section 9: a reader of format 3 does not read format 2; the old bundle's own stub does.
    old = golden.GOLDEN_DIR / "payload-v2.bin"
    data = old.read_bytes()
    assert FORMAT_VERSION == 3 and int.from_bytes(data[8:12], "little") == 2
    with pytest.raises(
        IntegrityError,
        match=r"payload format 2, older than the format 3 this program reads; ask "
        r"the bundle itself \(`\S+ --bundle-info`, `--bundle-verify`\) or rebuild",
    ):
        read_payload(str(old), io.BytesIO(data), 0, len(data))
    data = data[:8] + (7).to_bytes(4, "little") + data[12:]
    with pytest.raises(
        IntegrityError,
        match="payload format 7, this program reads format 3; the file is damaged or made by a newer bundler",
    ):
        read_payload(str(old), io.BytesIO(data), 0, len(data))
    assert "**Older formats.** A reader of format 3 refuses a bundle of format 2" in SPEC


def test_the_header_table_of_the_spec_matches_the_vector():
    payload, data = _open_vector()
    index_len = len(payload.index_bytes)
    sig_len, data_len = int.from_bytes(data[12:16], "little"), int.from_bytes(data[24:32], "little")
    assert int.from_bytes(data[16:24], "little") == index_len
    assert data[32:64] == hashlib.sha256(payload.index_bytes).digest()
    assert 64 + index_len + sig_len + data_len == len(data) and sig_len == 104
    block = data[64 + index_len : 64 + index_len + sig_len]
    assert block[:8] == b"ed25519\x00" and payload.data_offset == 64 + index_len + sig_len
    # Canonical JSON: what a second writer must produce.
    assert (
        payload.index_bytes
        == json.dumps(json.loads(payload.index_bytes), sort_keys=True, separators=(",", ":")).encode()
    )


# ---------------------------------------------------------------- the schema in the spec


def _schema():
    block = re.search(r"### 3\.1 Schema.*?```json\n(.*?)```", SPEC, re.S)
    assert block, "docs/format.md section 3.1 must hold the index schema as a json block"
    return json.loads(block.group(1))


def _errors(value, schema, root, where="index"):
    """A small JSON Schema validator, enough for the keywords the spec uses; returns what does not hold."""
    if "$ref" in schema:
        return _errors(value, root["$defs"][schema["$ref"].rsplit("/", 1)[1]], root, where)
    if "oneOf" in schema:
        matching = [s for s in schema["oneOf"] if not _errors(value, s, root, where)]
        return [] if len(matching) == 1 else [f"{where} matches {len(matching)} of oneOf"]
    found = []
    types = {"object": dict, "array": list, "string": str, "boolean": bool}
    kind = schema.get("type")
    if kind == "integer" and not (isinstance(value, int) and not isinstance(value, bool)):
        return [f"{where} is not an integer"]
    if kind in types and not isinstance(value, types[kind]):
        return [f"{where} is not a {kind}"]
    if "const" in schema and (value != schema["const"] or type(value) is not type(schema["const"])):
        found.append("{} is not {!r}".format(where, schema["const"]))
    if "enum" in schema and value not in schema["enum"]:
        found.append("{} is not one of {}".format(where, schema["enum"]))
    if "pattern" in schema and not re.fullmatch(schema["pattern"].lstrip("^").rstrip("$"), value):
        found.append("{} does not match {}".format(where, schema["pattern"]))
    if isinstance(value, str) and len(value) < schema.get("minLength", 0):
        found.append(f"{where} is too short")
    if "minimum" in schema and value < schema["minimum"] or "maximum" in schema and value > schema["maximum"]:
        found.append(f"{where} is out of range")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            found.append(f"{where} has too few items")
        for n, item in enumerate(value):
            found += _errors(item, schema.get("items", {}), root, f"{where}[{n}]")
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        found += [f"{where} has no {k!r}" for k in schema.get("required", []) if k not in value]
        if schema.get("additionalProperties") is False:
            found += [f"{where} has the unlisted field {k!r}" for k in value if k not in properties]
        for key, item in value.items():
            if key in properties:
                found += _errors(item, properties[key], root, f"{where}.{key}")
    return found


def test_the_vectors_index_validates_against_the_spec_schema():
    schema = _schema()
    index = json.loads(golden.INDEX_JSON.read_text())
    assert _errors(index, schema, schema) == []
    # Every field of the vector is used: each optional field of the schema appears in it.
    split = json.loads(golden.SPLIT_INDEX_JSON.read_text())
    assert _errors(split, schema, schema) == []
    optional = set(schema["properties"]) - set(schema["required"])
    used = set(index) | set(split)
    assert optional <= used, f"the vectors must set every optional field: {sorted(optional - used)}"


@pytest.mark.parametrize(
    "mutate, problem",
    [
        (lambda d: d.update(not_a_field="2.31"), "unlisted field 'not_a_field'"),
        (lambda d: d["entries"][0].update(mode=0o4755), "out of range"),
        (lambda d: d["images"][1].update(manifest="sha256:" + "0" * 64), "matches 0 of oneOf"),
        (lambda d: d.update(name="golden\n"), "does not match"),
        (lambda d: d["groups"][0]["frames"][0].update(size=True), "is not an integer"),
    ],
)
def test_the_schema_check_can_fail(mutate, problem):
    schema = _schema()
    index = json.loads(golden.INDEX_JSON.read_text())
    mutate(index)
    assert any(problem in e for e in _errors(index, schema, schema))


def test_the_spec_architecture_table_is_the_code_table():
    section = SPEC.split("## 7. Architectures", 1)[1].split("\n## ", 1)[0]
    rows = [
        [c.strip(" `") for c in line.strip("|").split("|")] for line in section.splitlines() if line.startswith("| `")
    ]
    table = [
        (a.name, f"{a.elf_machine}", "64-bit" if a.elf_64bit else "32-bit", a.platform, sorted(a.aliases))
        for a in arches.TABLE
    ]
    spec = [(r[0], r[1].split()[0], r[2], r[3], sorted(x.strip(" `") for x in r[4].split(","))) for r in rows]
    assert spec == table

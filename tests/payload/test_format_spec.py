"""docs/format.md against the code: the golden vector (testing/golden.py) is read by the reader, made again byte
for byte by the writer, carries the spec's version and sha256, and its index validates against the spec's schema
(which allows no field it does not list). So a change to the format cannot go unnoticed by the spec."""

import hashlib
import io
import json
import re
import tempfile
from pathlib import Path

import pytest

from payload import FORMAT_VERSION, arches
from payload.errors import IntegrityError
from payload.groups import extract_group
from payload.layout import read_head, read_payload
from payload.report import verify_all
from payload.signing import required_key, verify_signature
from testing import golden

ROOT = Path(__file__).resolve().parents[2]
SPEC = (ROOT / "docs" / "format.md").read_text()


def _open_vector():
    data = golden.VECTOR.read_bytes()
    return read_payload(str(golden.VECTOR), io.BytesIO(data), 0, len(data)), data


def test_the_spec_the_code_and_the_vector_name_one_version():
    stated = re.search(r"\*\*Format version: (\d+)\*\*", SPEC)
    assert stated and int(stated.group(1)) == FORMAT_VERSION
    assert golden.VECTOR.name == f"payload-v{FORMAT_VERSION}.bin"
    data = golden.VECTOR.read_bytes()
    assert data[:8] == b"BUNDLER\x00" and int.from_bytes(data[8:12], "little") == FORMAT_VERSION
    documents = json.loads(golden.INDEX_JSON.read_text())
    assert documents["content index"]["format"] == documents["encoding table"]["format"] == FORMAT_VERSION


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
    documents = json.loads(golden.INDEX_JSON.read_text())
    assert payload.index.to_json() == documents["content index"]
    assert payload.index.table_json() == documents["encoding table"]
    assert payload.bundle_id == hashlib.sha256(data[104 : 104 + len(payload.index_bytes)]).hexdigest()
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
    table_len = int.from_bytes(data[24:32], "little")
    assert 104 + index_len + sig_len + table_len == len(data) and len(payload.index.parts) == 3
    whole, _ = _open_vector()
    assert b"".join(parts.values()) == golden.VECTOR.read_bytes()[whole.data_offset :]
    # Identity is content: the same content index bytes and signature, so the same bundle id; only the table differs.
    assert payload.index_bytes == whole.index_bytes and payload.signature == whole.signature
    assert payload.bundle_id == whole.bundle_id and payload.table_bytes != whole.table_bytes
    assert payload.index.with_parts(()).table_json() == whole.index.table_json()
    assert "3 parts verified" in verify_all(payload, io.BytesIO(data))
    verify_signature(payload, [required_key(payload)])


@pytest.mark.parametrize("older", [2, 3])
def test_a_bundle_of_an_older_format_is_refused_naming_what_still_reads_it(older):
    # docs/format.md, section 9: a reader of format 4 does not read format 3 or 2; the old bundle's own stub does.
    old = golden.GOLDEN_DIR / f"payload-v{older}.bin"
    data = old.read_bytes()
    assert FORMAT_VERSION == 4 and int.from_bytes(data[8:12], "little") == older
    with pytest.raises(
        IntegrityError,
        match=rf"payload format {older}, older than the format 4 this program reads; ask "
        r"the bundle itself \(`\S+ --bundle-info`, `--bundle-verify`\), or rebuild",
    ):
        read_payload(str(old), io.BytesIO(data), 0, len(data))
    data = data[:8] + (7).to_bytes(4, "little") + data[12:]
    with pytest.raises(
        IntegrityError,
        match="payload format 7, this program reads format 4; the file is damaged or made by a newer bundler",
    ):
        read_payload(str(old), io.BytesIO(data), 0, len(data))
    # Offered by a registry (an update, a pull): one line that names the way forward, for a newer or an older one.
    for fmt, offered in ((7, data), (older, old.read_bytes())):
        with pytest.raises(IntegrityError) as refused:
            read_head("r.example/edge/app@sha256:" + "a" * 64, offered)
        assert str(refused.value).count("\n") == 0 and (
            f"a bundle of payload format {fmt}; this program reads format 4, so it cannot update to it or pull it: "
            f"pull it with a bundler of format {fmt} (`bundler pull r.example/edge/app@sha256:"
        ) in str(refused.value)
    assert "**Older formats.** A reader of format 4 refuses a bundle of format 3, 2 or 1" in SPEC


def test_the_header_table_of_the_spec_matches_the_vector():
    payload, data = _open_vector()
    index_len, table_len = len(payload.index_bytes), len(payload.table_bytes)
    sig_len, data_len = int.from_bytes(data[12:16], "little"), int.from_bytes(data[32:40], "little")
    assert int.from_bytes(data[16:24], "little") == index_len and int.from_bytes(data[24:32], "little") == table_len
    assert data[40:72] == hashlib.sha256(payload.index_bytes).digest()
    assert data[72:104] == hashlib.sha256(payload.table_bytes).digest()
    assert 104 + index_len + sig_len + table_len + data_len == len(data) and sig_len == 104
    block = data[104 + index_len : 104 + index_len + sig_len]
    assert block[:8] == b"ed25519\x00" and data[104 + index_len + sig_len :].startswith(payload.table_bytes)
    assert payload.data_offset == 104 + index_len + sig_len + table_len
    # Canonical JSON: what a second writer must produce.
    for document in (payload.index_bytes, payload.table_bytes):
        assert document == json.dumps(json.loads(document), sort_keys=True, separators=(",", ":")).encode()


# ---------------------------------------------------------------- the schema in the spec


def _schema(section="3\\.1 Schema"):
    block = re.search(rf"### {section}.*?```json\n(.*?)```", SPEC, re.S)
    assert block, f"docs/format.md section {section} must hold a schema as a json block"
    return json.loads(block.group(1))


def _table_schema():
    return _schema("3\\.5 The encoding table")


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
    if isinstance(value, str) and len(value) > schema.get("maxLength", len(value)):
        found.append(f"{where} is too long")
    if "minimum" in schema and value < schema["minimum"] or "maximum" in schema and value > schema["maximum"]:
        found.append(f"{where} is out of range")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            found.append(f"{where} has too few items")
        if len(value) > schema.get("maxItems", len(value)):
            found.append(f"{where} has too many items")
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
    schema, table_schema = _schema(), _table_schema()
    documents = json.loads(golden.INDEX_JSON.read_text())
    split_documents = json.loads(golden.SPLIT_INDEX_JSON.read_text())
    for docs in (documents, split_documents):
        assert _errors(docs["content index"], schema, schema) == []
        assert _errors(docs["encoding table"], table_schema, table_schema, "table") == []
    # Every field of the vector is used: each optional field of the schemas appears in it.
    for chosen, key in ((schema, "content index"), (table_schema, "encoding table")):
        optional = set(chosen["properties"]) - set(chosen["required"])
        used = set(documents[key]) | set(split_documents[key])
        assert optional <= used, f"the vectors must set every optional field: {sorted(optional - used)}"


@pytest.mark.parametrize(
    "mutate, problem",
    [
        (lambda d: d["content index"].update(not_a_field="2.31"), "unlisted field 'not_a_field'"),
        (lambda d: d["content index"]["entries"][0].update(mode=0o4755), "out of range"),
        (lambda d: d["content index"]["entries"][0].update(group="files"), "unlisted field 'group'"),
        (lambda d: d["content index"]["images"][1].update(manifest="sha256:" + "0" * 64), "matches 0 of oneOf"),
        (lambda d: d["content index"].update(name="golden\n"), "does not match"),
        (lambda d: d["encoding table"]["groups"][0]["frames"][0].update(size=True), "is not an integer"),
        (lambda d: d["encoding table"]["groups"][0]["frames"][0].pop("entries"), "has no 'entries'"),
    ],
)
def test_the_schema_check_can_fail(mutate, problem):
    schema, table_schema = _schema(), _table_schema()
    documents = json.loads(golden.INDEX_JSON.read_text())
    mutate(documents)
    found = _errors(documents["content index"], schema, schema)
    found += _errors(documents["encoding table"], table_schema, table_schema, "table")
    assert any(problem in e for e in found)


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

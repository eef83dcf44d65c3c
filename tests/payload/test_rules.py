"""payload/rules.py checks names, versions, digests and the like with character sets (an installed start does not
import re). The regular expressions below are the rules as docs/format.md states them; each check must agree
with its expression on every string of a corpus built to hit the edges: each allowed and each refused character
at the start, inside and at the end, lengths around the fixed ones, a trailing newline, non-ASCII digits."""

import itertools
import json
import re

import pytest

from payload import jsondecode, rules, versions

SPEC = {
    rules.is_name: r"[a-z][a-z0-9-]*",
    rules.is_version: r"[A-Za-z0-9][A-Za-z0-9.+_-]*",
    rules.is_sha256: r"[0-9a-f]{64}",
    rules.is_digest: r"sha256:[0-9a-f]{64}",
    rules.is_key_id: r"ed25519:[A-Za-z0-9+/]{43}=",
    rules.is_glibc_version: r"([0-9]{1,3})\.([0-9]{1,3})",
    rules.is_platform: r"[a-z0-9_.-]+/[a-z0-9_.-]+(/[a-z0-9_.-]+)?",
}
ODD = ["a", "Z", "0", "9", "-", ".", "+", "_", "/", ":", "=", "{", "}", " ", "\n", "\x00", "é", "١", "²", "A", "f", "g"]


def corpus():
    words = [
        "",
        "linux/amd64",
        "linux/arm/v7",
        "2.31",
        "2.310",
        "1234.1",
        "ed25519:",
        "sha256:",
        "a" * 64,
        "0123456789abcdef" * 4,
        "sha256:" + "0123456789abcdef" * 4,
        "ed25519:" + "A/+9" * 10 + "abc=",
        "1.0.0-rc1+b2",
    ]
    out = set(words)
    for word in words:
        for c in ODD:
            out.update({c + word, word + c, word[: len(word) // 2] + c + word[len(word) // 2 :], word[1:], word[:-1]})
    out.update("".join(p) for n in range(1, 4) for p in itertools.product(["a", "-", "1", "/", ".", "G"], repeat=n))
    return sorted(out)


@pytest.mark.parametrize("check", list(SPEC), ids=lambda f: f.__name__)
def test_each_check_agrees_with_its_regular_expression(check):
    pattern = re.compile(SPEC[check])
    disagree = [s for s in corpus() if check(s) != (pattern.fullmatch(s) is not None)]
    assert disagree == []
    assert any(check(s) for s in corpus()) and not all(check(s) for s in corpus())  # the corpus tells them apart
    assert not check(None) and not check(7)


def test_glibc_version_gives_the_numbers():
    assert rules.glibc_version("2.31") == (2, 31)
    assert rules.glibc_version("2.031") == (2, 31)
    assert rules.glibc_version("2.") is None and rules.glibc_version("2.3.4") is None


def test_modes_agree_with_their_regular_expression():
    pattern = re.compile(r"0?[0-7]{3}")
    for text in corpus() + ["755", "0755", "0644", "00755", "0788", "7777", "075"]:
        assert rules.parse_mode(text) == (int(text, 8) if pattern.fullmatch(text) else None), text


def test_placeholders_are_found_as_the_regular_expression_finds_them():
    pattern = re.compile(r"\{[A-Za-z_][A-Za-z0-9_]*\}")
    items = [
        "{root}/bin",
        "{a{b}",
        "{}",
        '{"a": 1}',
        "{root}{images}x{data}",
        "{1x}{_y}",
        "{ok",
        "}{",
        "{a}}",
        "--dir={data}/x",
        "{É}",
        "{root",
    ] + ["".join(p) for p in itertools.product("{}a1_", repeat=4)]
    for item in items:
        assert rules.placeholders(item) == pattern.findall(item), item
    assert rules.unknown_placeholders("{root}/{nope}") == ["{nope}"]


def test_version_pieces_agree_with_the_regular_expression():
    pattern = re.compile(r"(\d+)|(\D+)")
    for text in corpus() + ["1.10.0", "2024.1.5", "rc10", "10rc", "1..2", "007"]:
        if "١" in text or "²" in text:
            continue  # versions are ASCII (is_version); \d would take other digits too
        expected = tuple((0, int(d)) if d else (1, o) for d, o in pattern.findall(text))
        assert versions._pieces(text) == expected, text


DOCUMENTS = [
    '{"a":[1,2.5,-3e2,true,false,null,"x\\u00e9\\n"],"b":{}}',
    " [] ",
    '"\\ud83d\\ude00"',
    "0",
    "-0.0",
    '{"nested":' * 20 + "1" + "}" * 20,
    "[NaN, Infinity, -Infinity]",
    '\t\n{"k": "v"}\r\n',
    '"é"',
]
BAD = ["", " ", "{", "[1,]", '{"a" 1}', "{} {}", "[1] x", "\ufeff[]", "{'a': 1}", '"\x01"', "01", "nul"]


@pytest.mark.parametrize("text", DOCUMENTS)
def test_documents_decode_as_json_loads_decodes_them(text):
    got, want = jsondecode.loads(text.encode("utf-8")), json.loads(text)
    assert json.dumps(got) == json.dumps(want)  # NaN != NaN: compare how they print
    assert jsondecode.loads(text) == got or "NaN" in text


@pytest.mark.parametrize("text", BAD)
def test_what_json_loads_refuses_is_refused(text):
    with pytest.raises(ValueError):
        json.loads(text)
    with pytest.raises(ValueError):
        jsondecode.loads(text.encode("utf-8"))


def test_bytes_that_are_not_utf8_are_refused():
    with pytest.raises(ValueError):
        jsondecode.loads(b'"\xff"')


# The distribution reference grammar (github.com/distribution/reference), ASCII as in Go's regexp.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN_PART = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
_OCI_DIGEST = r"sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128}"
_REFERENCE = (
    rf"(?:({_DOMAIN})/)?({_COMPONENT}(?:/{_COMPONENT})*)"
    rf"(?::([A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}}))?(?:@({_OCI_DIGEST}))?"
)
REFERENCES = [
    "busybox",
    "library/busybox",
    "docker.io/x/y",
    "localhost:5000/a/b",
    "localhost/a",
    "127.0.0.1:5000/fleet/demo:1.0",
    "a.b/c__d/e-f:v1.0_x",
    "[::1]:5000/a",
    "reg.io/a/b@sha256:" + "a" * 64,
    "a/b:tag@sha512:" + "0" * 128,
    "a--b",
    "a___b",
    "a.-b",
    "reg-.io/a",
    "reg.io:x/a",
    "a:" + "t" * 128,
    "a:" + "t" * 129,
]


def _reference_spec(text):
    match = re.fullmatch(_REFERENCE, text)
    if match is None:
        return False
    domain, path = match.group(1), match.group(2)
    # docker takes the first component for a registry only when it looks like a host
    if domain is not None and not ("." in domain or ":" in domain or domain == "localhost" or domain[0] == "["):
        domain, path = None, domain + "/" + path
        if re.fullmatch(rf"{_COMPONENT}(?:/{_COMPONENT})*", path) is None:
            return False
    hub = domain is None or domain.lower() in ("docker.io", "index.docker.io", "registry-1.docker.io")
    return len(path) + (8 if hub and "/" not in path else 0) <= 255  # the normalised library/ prefix counts


def reference_corpus():
    out = set(REFERENCES)
    for word in REFERENCES:
        for c in ODD + ["@", "[", "]", "A"]:
            out.update({c + word, word + c, word[: len(word) // 2] + c + word[len(word) // 2 :], word[1:], word[:-1]})
    out.update(["a" * n for n in (246, 247, 248, 255, 256)] + ["x/" + "a" * n for n in (252, 253, 254)])
    return sorted(out)


def test_references_agree_with_the_distribution_grammar():
    disagree = [s for s in reference_corpus() if rules.is_reference(s) != _reference_spec(s)]
    assert disagree == []
    assert sum(map(rules.is_reference, reference_corpus())) > 50
    assert not rules.is_reference(None) and not rules.is_reference("")


def test_registry_hosts_and_digests_agree_with_their_expressions():
    for word in reference_corpus():
        host = word.split("/")[0]
        assert rules.is_registry_host(host) == (re.fullmatch(_DOMAIN, host) is not None), host
        assert rules.is_oci_digest(word.partition("@")[2]) == (
            re.fullmatch(_OCI_DIGEST, word.partition("@")[2]) is not None
        )

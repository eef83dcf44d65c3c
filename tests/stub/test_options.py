import pytest

from payload.errors import UsageError
from stub.options import parse


def test_runtime_args_pass_untouched_after_the_first_non_bundle_arg():
    opts = parse(["--bundle-dir", "/x", "serve", "--bundle-dir", "y", "--port=80", ""])
    assert opts.dir == "/x"
    assert opts.args == ["serve", "--bundle-dir", "y", "--port=80", ""]


def test_double_dash_ends_stub_options():
    opts = parse(["--bundle-no-pull", "--", "--bundle-info"])
    assert opts.no_pull and not opts.info
    assert opts.args == ["--bundle-info"]


def test_values_in_both_forms_and_repeatable():
    opts = parse(["--bundle-registry-mirror=a:5000", "--bundle-registry-mirror", "b", "--bundle-info", "--json"])
    assert opts.registry_mirror == ["a:5000", "b"] and opts.info and opts.json and opts.args == []


@pytest.mark.parametrize(
    "argv",
    [
        ["--bundle-nope"],
        ["--bundle-dir"],
        ["--bundle-dir="],
        ["--bundle-info=1"],
        ["--bundle-insecure-registry", "nope"],
        ["--bundle-registry-mirror", "a b"],
    ],
)
def test_bad_stub_options_are_usage_errors(argv):
    with pytest.raises(UsageError):
        parse(argv)


def test_an_insecure_registry_needs_its_port_and_the_new_flags_parse():
    with pytest.raises(UsageError, match="expected HOST:PORT"):
        parse(["--bundle-insecure-registry=registry.local"])
    opts = parse(
        [
            "--bundle-insecure-registry",
            "127.0.0.1:5000",
            "--bundle-rollback",
            "--bundle-repair",
            "--bundle-install",
            "--bundle-allow-downgrade",
            "run",
        ]
    )
    assert opts.insecure_registry == ["127.0.0.1:5000"] and opts.args == ["run"]
    assert opts.rollback and opts.repair and opts.install and opts.allow_downgrade


def test_the_delta_memory_bound_goes_with_an_update_and_is_a_size():
    opts = parse(["--bundle-update", "reg.local:5000/a/b:1", "--bundle-delta-memory", "128M"])
    assert opts.delta_memory == "128M"
    with pytest.raises(UsageError, match="goes with --bundle-update"):
        parse(["--bundle-delta-memory", "128M"])
    with pytest.raises(UsageError, match="--bundle-delta-memory lots is not a size"):
        parse(["--bundle-update", "--bundle-delta-memory=lots"])


def test_the_registry_auth_file_must_exist_and_its_path_is_made_absolute(tmp_path, monkeypatch):
    from stub.images import registry_auth

    (tmp_path / "auth.json").write_text("{}")
    monkeypatch.chdir(tmp_path)
    opts = parse(["--bundle-registry-auth", "auth.json", "run"])
    # absolute: the detached puller gets this path and does not run in this directory
    assert registry_auth(opts, {}) == str(tmp_path / "auth.json") and opts.args == ["run"]
    assert registry_auth(parse([]), {"BUNDLE_REGISTRY_AUTH": "auth.json"}) == str(tmp_path / "auth.json")
    assert registry_auth(parse([]), {}) is None  # the client's own lookup: REGISTRY_AUTH_FILE, ~/.docker
    with pytest.raises(UsageError, match="--bundle-registry-auth missing.json: no such file"):
        parse(["--bundle-registry-auth", "missing.json"])
    # The variable is checked when a registry is used (a unit may set it for starts that never pull).
    with pytest.raises(UsageError, match="BUNDLE_REGISTRY_AUTH missing.json: no such file"):
        registry_auth(parse([]), {"BUNDLE_REGISTRY_AUTH": "missing.json"})

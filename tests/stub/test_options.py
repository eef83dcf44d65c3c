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


@pytest.mark.parametrize("argv", [["--bundle-nope"], ["--bundle-dir"], ["--bundle-dir="], ["--bundle-info=1"]])
def test_bad_stub_options_are_usage_errors(argv):
    with pytest.raises(UsageError):
        parse(argv)

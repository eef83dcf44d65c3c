import pytest

from payload.versions import is_older, version_key


@pytest.mark.parametrize(
    "older, newer",
    [
        ("1.9.2", "1.10.0"),
        ("1.0", "1.0.1"),
        ("2.0.0-rc1", "2.0.0"),
        ("2.0.0-rc1", "2.0.0-rc2"),
        ("2.0.0-rc9", "2.0.0-rc10"),
        ("0.9", "1"),
        ("1.0.0", "1.0.1-beta"),
        ("2024.1.5", "2024.10.1"),
    ],
)
def test_newer_versions_sort_after_older_ones(older, newer):
    assert is_older(older, newer) and not is_older(newer, older)


def test_build_metadata_is_ignored_and_equal_versions_are_not_older():
    assert version_key("1.0.0+b7") == version_key("1.0.0")
    assert not is_older("1.0.0", "1.0.0")

"""payload/sbom.py on a bundle made without an SBOM (the golden vector, as an older bundler wrote it): exit 2 in
words, not a crash."""

import io

import pytest

from payload.errors import UsageError
from payload.layout import read_payload
from payload.sbom import read_sbom, sbom_entry
from testing import golden


def test_a_bundle_without_an_sbom_is_a_usage_error_naming_it():
    data = golden.VECTOR.read_bytes()
    f = io.BytesIO(data)
    payload = read_payload(str(golden.VECTOR), f, 0, len(data))
    assert sbom_entry(payload.index) is None
    with pytest.raises(UsageError, match="holds no SBOM") as raised:
        read_sbom(payload, f)
    assert raised.value.exit_code == 2 and str(golden.VECTOR) in str(raised.value)

"""Property: a mutated real bundle is refused with exit 3 (one line, no traceback, nothing executed, nothing left),
unless the mutation touched nothing that matters, and then what runs is the verified content.

The runs use the stub's code as `python -m stub` with BUNDLE_EXECUTABLE=<mutated file>, which reads the file
exactly as the frozen stub does, at a fifth of the cost of the PyInstaller bootloader (about 200 runs here).
testing/mutations.py lists the mutation kinds; scripts/reliability.py runs thousands of them.
"""

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from testing.mutations import ALL_LIES, Lab, build_bases


@pytest.fixture(scope="module")
def lab(tmp_path_factory, cache_dir, stub_path):
    work = tmp_path_factory.mktemp("mutations")
    bases, splices, expected = build_bases(work / "bases", cache_dir, stub_path)
    lab = Lab(bases, splices, str(work / "lab"), expected)
    yield lab
    assert lab.all_intact(), "a mutation was not undone"


@st.composite
def mutations(draw, lab):
    kind = draw(st.sampled_from(["flip", "flip", "flip_any", "truncate", "lie", "lie", "splice"]))
    base = draw(st.sampled_from(["plain", "signed"]))
    bench = lab.benches[base]
    if kind == "flip":
        # Half in the header, index and signature (a few KB), half anywhere in the section (mostly data).
        span = draw(st.sampled_from([bench.meta_size, bench.size]))
        bits = st.tuples(st.integers(0, span - 1), st.integers(0, 7))
        return kind, base, draw(st.lists(bits, min_size=1, max_size=3, unique=True))  # a bit flipped twice is no change
    if kind == "flip_any":
        return kind, base, (draw(st.integers(0, bench.file_size - 1)), draw(st.integers(0, 7)))
    if kind == "truncate":
        return kind, base, draw(st.integers(0, bench.file_size - 1))
    if kind == "lie":
        return kind, "padded", (draw(st.sampled_from(ALL_LIES)), draw(st.integers(0, 2**32)))
    return kind, None, draw(st.integers(0, 2))


@pytest.mark.slow
@settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_mutated_bundle_is_refused_or_runs_only_verified_content(lab, data):
    mutation = data.draw(mutations(lab), label="mutation")
    verdict, problem = lab.attempt(mutation)
    assert problem is None, f"{mutation} -> {verdict}: {problem}"


def test_every_lie_is_caught_at_least_once(lab):
    # Each lie on its own, so that a lie the checks let through is named (the property test samples them).
    failures = []
    for name in ALL_LIES:
        for value in (0, 2**31 + 5):
            verdict, problem = lab.attempt(("lie", "padded", (name, value)))
            if problem:
                failures.append(f"{name} ({value}): {problem}")
    assert failures == []


def test_a_mutation_inside_the_payload_that_was_not_refused_would_be_caught(lab):
    # The judge itself must be able to fail: an untouched bundle, judged as if it had to be refused.
    from testing import mutations as m

    root, mark = m.fresh_dir(lab.workdir, "root"), m.fresh_dir(lab.workdir, "ran")
    result = m.run_stub(lab.benches["plain"].path, root, mark)
    verdict, problem = m.judge(result, root, mark, False, lab.expected)
    assert verdict == "other" and "expected 3" in problem


def test_truncated_frozen_bundle_never_installs_or_runs(lab, tmp_path):
    # With the real frozen stub. A cut that only loses the section header table reaches our code: exit 3.
    # A deeper cut loses PyInstaller's archive, so its bootloader (or the kernel) refuses the file before any
    # code of ours runs: not exit 3, but nothing is installed or run either (docs/reliability.md).
    from testing.faults import start

    source = lab.benches["plain"].path
    size = lab.benches["plain"].file_size
    outcomes = []
    for keep in (size - 100, size // 2, 4096):
        cut = tmp_path / f"cut-{keep}"
        with open(source, "rb") as f, open(cut, "wb") as out:
            out.write(f.read(keep))
        os.chmod(cut, 0o755)
        root = tmp_path / f"root-{keep}"
        result = start(cut, root, env={"FAULTS_MARK": str(tmp_path / "ran")})
        outcomes.append(result.returncode)
        assert result.returncode != 0 and not os.path.exists(root) and not (tmp_path / "ran").exists()
    assert outcomes[0] == 3

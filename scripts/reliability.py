#!/usr/bin/env python3
"""Reliability figures, measured in ONE run, each printed with its goal:

  1. mutated bundles tried and refused: bit flips, truncations, lying and spliced indexes (goal: >= 2,000
     tries, every harmful one refused with exit 3, 0 tracebacks, 0 executed);
  2. kill -9 trials of a real installing process, and broken installs after the next start (goal: >= 50
     trials, 0 broken);
  3. concurrent first starts and the extractions they performed (goal: 16 starts, 1 extraction), plus an
     installed version and a newer one started together;
  4. bit flips outside the payload section and cuts of the file, run with the real frozen stub: which layer
     refused each (our outside sha256: exit 3; PyInstaller's bootloader: exit 255; a crash), nothing installed.

    scripts/reliability.py                        # the full run
    scripts/reliability.py --tries 200 --kills 10 # a smoke run

Run it with the project's Python (the one with PyInstaller and zstandard). Trials 2 and 3 use the real frozen
stub. Trial 1 runs the stub's code as `python -m stub` with BUNDLE_EXECUTABLE=<mutated file>, which reads the
file exactly as the frozen stub does at a fifth of the cost of the PyInstaller bootloader. docs/reliability.md
records the figures of a full run and lists the faults.
"""

import argparse
import collections
import os
import random
import re
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ["PYTHONPATH"] = str(ROOT)

from testing import faults, mutations  # noqa: E402
from testing.helpers import bundler  # noqa: E402


def log(message):
    print("  .. " + message, file=sys.stderr, flush=True)


def verdict(ok):
    return "PASS" if ok else "MISS"


# ---------------------------------------------------------------- 1. mutations


def mutation_trials(work, cache, stub, tries, workers, seed):
    bases, splices, expected = mutations.build_bases(work / "bases", cache, stub)
    counts = collections.Counter()
    by_kind = collections.defaultdict(collections.Counter)
    problems = []
    lock = threading.Lock()
    next_try = iter(range(tries))

    def worker(number):
        lab = mutations.Lab(bases, splices, str(work / f"lab{number}"), expected)
        rng = random.Random(seed * 1000 + number)
        while True:
            with lock:
                if next(next_try, None) is None:
                    break
            mutation = mutations.random_mutation(lab, rng)
            outcome, problem = lab.attempt(mutation)
            with lock:
                counts[outcome] += 1
                by_kind[mutation[0]][outcome] += 1
                if problem:
                    problems.append((mutation, outcome, problem))
                done = sum(counts.values())
                if done % 250 == 0:
                    log(f"{done} mutated bundles tried")
        assert lab.all_intact(), "a mutation was not undone"

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return counts, by_kind, problems


# ---------------------------------------------------------------- 2. kill -9


def kill_trials(work, exe, expected, kills, seed):
    rng = random.Random(seed)
    duration = faults.timed_install(exe, work / "timing")
    states = collections.Counter()
    broken = []
    for trial in range(kills):
        root = work / f"kill{trial}"
        how = ("at a random moment", "during extraction", "right after the rename")[trial % 3]
        if how == "at a random moment":
            state = faults.kill_during_install(exe, root, rng.uniform(0, duration), work / "tmp")
        else:
            state = faults.kill_at(exe, root, how, rng, work / "tmp")
        states[state] += 1
        recovered = faults.start(exe, root)
        problems = faults.install_problems(root, expected)
        if recovered.returncode != 0 or not recovered.stdout.startswith("RAN") or problems:
            broken.append((trial, how, state, recovered.returncode, recovered.stderr.strip()[-300:], problems))
        shutil.rmtree(root, ignore_errors=True)
    return duration, states, broken


# ---------------------------------------------------------------- 4. damage outside the payload, frozen


def outside_trials(work, exe, flips, cuts, seed):
    """Bit flips outside the payload section and cuts of the file, run with the real frozen stub: which layer
    refused each (our check: exit 3; the bootloader: exit 255 and its own words; the kernel or a crash), and
    whether anything was installed or run (it must never be)."""
    from testing.helpers import section_span

    rng = random.Random(seed)
    offset, size = section_span(exe, "bundle")
    file_size = os.path.getsize(exe)
    outside = [(0, offset), (offset + size, file_size)]
    outcomes = {"flip": collections.Counter(), "cut": collections.Counter()}
    words, harmed = collections.Counter(), []
    for trial in range(flips + cuts):
        kind = "flip" if trial < flips else "cut"
        damaged = work / "damaged"
        data = bytearray(Path(exe).read_bytes())
        if kind == "flip":
            start, end = rng.choices(outside, [b - a for a, b in outside])[0]
            at = rng.randrange(start, end)
            data[at] ^= 1 << rng.randrange(8)
        else:
            del data[rng.randrange(1, file_size) :]
        damaged.write_bytes(bytes(data))
        os.chmod(damaged, 0o755)
        root, mark = work / "root", work / "ran"
        try:
            result = faults.start(damaged, root, env={"FAULTS_MARK": str(mark)}, timeout=60)
            code = result.returncode
            stderr = result.stderr
        except Exception:  # a hang counts as its own outcome
            code, stderr = "timeout", ""
        label = {
            3: "exit 3 (our check)",
            255: "exit 255 (bootloader)",
            1: "exit 1 (PyInstaller's own Python bootstrap)",
        }.get(code) or (f"signal {-code} (crash)" if isinstance(code, int) and code < 0 else f"exit {code}")
        outcomes[kind][label] += 1
        if code == 255:
            said = stderr.strip().splitlines()[-1] if stderr.strip() else "(nothing on stderr)"
            words[re.sub(r"\[PYI-\d+:", "[PYI-pid:", said)[:100]] += 1
        installed = root.is_dir() and any(p.name not in (".lock", ".locks") for p in root.iterdir())
        if code == 0 or mark.exists() or installed:
            harmed.append((kind, code, stderr.strip()[-200:]))
        shutil.rmtree(root, ignore_errors=True)
        if mark.exists():
            mark.unlink()
    return outcomes, words, harmed


# ---------------------------------------------------------------- 3. concurrency


def concurrency_trials(work, large, versions):
    exe, expected = large
    root = work / "concurrent"
    results = faults.concurrent_starts([[exe, "--bundle-dir", root, f"n{i}"] for i in range(16)])
    ran = sum(r.returncode == 0 and r.stdout.startswith("RAN") for r in results)
    first = (len(results), ran, faults.extractions(results), faults.install_problems(root, expected))
    (v1, _), (v2, expected2) = versions
    root = work / "two-versions"
    faults.start(v1, root)
    results = faults.concurrent_starts([[exe, "--bundle-dir", root] for exe in (v1, v2) * 4])
    new_ran = sum(r.returncode == 0 and r.stdout.split()[1:2] == ["2.0.0"] for r in results[1::2])
    old = [faults.old_start_outcome(r, "1.0.0", "2.0.0") for r in results[0::2]]
    both = new_ran, old.count("ran"), old.count("refused"), old.count(None), faults.install_problems(root, expected2)
    return first, both


def scratch(work, name):
    """A work dir in memory (/dev/shm) when there is one: the mutation trials install thousands of small
    bundles, and the disk's fsyncs would be most of their time. The kill trials stay on the disk."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        path = Path(tempfile.mkdtemp(prefix="reliability-", dir=shm))
        os.symlink(path, work / name)
        return path
    return work / name


def build_bundles(work, cache, stub):
    files = faults.large_files(30)
    project = faults.write_project(work / "large", files)
    large = faults.build(project, cache, "--stub", stub), faults.expected_files(project, files)
    versions = []
    for version in ("1.0.0", "2.0.0"):
        project = faults.write_project(work / ("v" + version), faults.SMALL, version=version)
        versions.append((faults.build(project, cache, "--stub", stub), faults.expected_files(project, faults.SMALL)))
    return large, versions


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tries", type=int, default=2000, help="mutated bundles to try (default 2000)")
    parser.add_argument("--kills", type=int, default=54, help="kill -9 trials (default 54)")
    parser.add_argument("--workers", type=int, default=3, help="mutation trials run at once (default 3)")
    parser.add_argument("--outside-flips", type=int, default=150, help="flips outside the payload (default 150)")
    parser.add_argument("--outside-cuts", type=int, default=50, help="cuts of the frozen file (default 50)")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument(
        "--cache-dir",
        help="bundler cache for the stub (default: bundler's own, so a stub built "
        "once is reused; the bundles always go through a fresh cache)",
    )
    args = parser.parse_args(argv)
    began = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="reliability-"))
    try:
        cache = str(work / "cache")
        log("building the stub (once per stub version) and the bundles...")
        stub = bundler("stub", "--host", *(["--cache-dir", args.cache_dir] if args.cache_dir else [])).stdout.strip()
        large, versions = build_bundles(work, cache, stub)
        build_seconds = time.monotonic() - began

        log("mutation trials (python -m stub)...")
        t = time.monotonic()
        counts, by_kind, problems = mutation_trials(
            scratch(work, "mutations"), cache, stub, args.tries, args.workers, args.seed
        )
        mutation_seconds = time.monotonic() - t
        log("kill -9 trials (frozen stub)...")
        t = time.monotonic()
        duration, states, broken = kill_trials(work / "kills", large[0], large[1], args.kills, args.seed)
        kill_seconds = time.monotonic() - t
        log("concurrency trials (frozen stub)...")
        first, both = concurrency_trials(work / "concurrency", large, versions)
        log("damage outside the payload (frozen stub)...")
        t = time.monotonic()
        (work / "outside").mkdir()
        outside = outside_trials(work / "outside", versions[0][0], args.outside_flips, args.outside_cuts, args.seed)
        outside_seconds = time.monotonic() - t
    finally:
        for link in work.iterdir():
            if link.is_symlink():
                shutil.rmtree(os.path.realpath(link), ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)

    tried = sum(counts.values())
    tracebacks = counts["traceback"] + sum("traceback" in p for _, _, p in problems)
    executed = sum("entrypoint ran" in p for _, _, p in problems)
    print(
        f"reliability, {sys.platform}, {os.cpu_count()} cores, seed {args.seed}, {time.monotonic() - began:.0f} s "
        f"(stub and bundles built in {build_seconds:.0f} s)"
    )
    print()
    print(f"1. mutated bundles (python -m stub, {mutation_seconds:.0f} s):")
    print(
        f"   tried {tried}; refused with exit 3: {counts['refused']}; ran verified content (mutation outside the "
        f"payload, or a harmless index change): {counts['ran']}"
    )
    for kind in mutations.KINDS:
        c = by_kind[kind]
        print(f"   {kind:<9} {sum(c.values()):5d} tried, {c['refused']:5d} refused, {c['ran']:4d} ran verified")
    print(f"   problems: {len(problems)} (tracebacks {tracebacks}, executed when it should not have {executed})")
    for mutation, outcome, problem in problems[:10]:
        print(f"     {mutation} -> {outcome}: {problem}")
    print(
        f"   {verdict(tried >= 2000 and not problems)}: >= 2000 tries, every harmful one refused, "
        "0 tracebacks, 0 executed"
    )
    print()
    print(
        f"2. kill -9 (frozen stub, 30 MB of real binaries, a full first start takes "
        f"{duration:.2f} s; {kill_seconds:.0f} s):"
    )
    print(
        f"   trials {sum(states.values())}; where the install stood when killed: "
        f"{', '.join(f'{name} {count}' for name, count in sorted(states.items()))}"
    )
    print(f"   broken installs after the next start: {len(broken)}")
    for row in broken[:10]:
        print(f"     {row}")
    print(f"   {verdict(sum(states.values()) >= 50 and not broken)}: >= 50 trials, 0 broken")
    print()
    starts, ran, extracted, problems16 = first
    print("3. concurrency (frozen stub):")
    print(
        f"   concurrent first starts {starts}, ran {ran}, extractions "
        f"{extracted}{f'; problems: {problems16}' if problems16 else ''}"
    )
    new_ran, old_ran, old_refused, old_other, problems2 = both
    print(
        f"   installed 1.0.0 and new 2.0.0 started together, 4 each: 2.0.0 ran {new_ran}; 1.0.0 ran {old_ran} (before "
        f"2.0.0 was current), refused as a downgrade {old_refused} (exit 4), other "
        f"{old_other}{f'; problems: {problems2}' if problems2 else ''}"
    )
    print(
        "   {}: 16 starts, 1 extraction; the new version runs, the old one runs or is refused, "
        "never made current".format(
            verdict(
                starts == ran == 16
                and extracted == 1
                and not problems16
                and new_ran == 4
                and old_other == 0
                and not problems2
            )
        )
    )

    outcomes, words, harmed = outside
    print()
    print(f"4. damage outside the payload section (frozen stub, {outside_seconds:.0f} s):")
    for kind in ("flip", "cut"):
        c = outcomes[kind]
        print(
            f"   {kind:<4} {sum(c.values()):4d} tried: "
            f"{', '.join(f'{name} {count}' for name, count in sorted(c.items()))}"
        )
    for text, count in words.most_common(4):
        print(f"   bootloader said ({count}): {text}")
    print(f"   installed or ran anyway: {len(harmed)}")
    for row in harmed[:10]:
        print(f"     {row}")
    print(f"   {verdict(not harmed)}: nothing installed or run from a damaged file")


if __name__ == "__main__":
    main()

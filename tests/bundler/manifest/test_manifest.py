"""bundle.toml loading: good manifests, and every error as one line pointing at the offending manifest line.

In the error examples the offending line carries the comment `# <-`; the tests find that line themselves and
compare it with the line in the message.
"""

import os
import textwrap
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from bundler.manifest import load_manifest
from bundler.manifest.model import resolve_url
from payload.arches import NAMES as ARCHS
from payload.errors import UsageError

SHA = "a" * 64

ISSUE_EXAMPLE = f"""\
[bundle]
name = "demo"                                    # lower-case letters, digits, '-'
version = "1.0.0"
entrypoint = ["bin/hello", "--root", "{{root}}"]   # first item relative to the installed root

[[file]]
path = "bin/hello"                               # where it lands under the installed root
mode = "0755"
source = {{ url = "https://example.org/hello", sha256 = "{SHA}" }}

[[image]]
name = "pause"
ref = "registry.k8s.io/pause:3.10"

[variants.online]
embed = ["pause"]
[variants.offline]
embed = "all"
"""

HEAD = """\
[bundle]
name = "demo"
version = "1.0.0"
entrypoint = ["bin/hello"]

[[file]]
path = "bin/hello"
mode = "0755"
source = { url = "hello.sh" }
"""


def write(tmp_path, text, name="bundle.toml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def load(tmp_path, text):
    return load_manifest(write(tmp_path, text))


def marked_line(text):
    lines = textwrap.dedent(text).split("\n")
    marked = [number for number, line in enumerate(lines, 1) if "# <-" in line]
    assert len(marked) == 1, "each error example marks exactly one line"
    return marked[0]


def load_error(tmp_path, text):
    """Load a bad manifest; return (line, message) after checking the one-line '<path>:<line>: ...; ...' form."""
    path = write(tmp_path, text)
    with pytest.raises(UsageError) as caught:
        load_manifest(path)
    message = str(caught.value)
    assert caught.value.exit_code == 2
    assert "\n" not in message
    assert message.startswith(f"{path}:"), message
    line, _, rest = message[len(f"{path}:") :].partition(": ")
    assert "; " in rest, f"no advice in: {message}"
    return int(line), rest


def assert_error_at_mark(tmp_path, text, *fragments):
    line, rest = load_error(tmp_path, text)
    assert line == marked_line(text), rest
    for fragment in fragments:
        assert fragment in rest
    return rest


# -- good manifests -------------------------------------------------------------------------------------------


def test_issue_example_loads(tmp_path):
    manifest = load(tmp_path, ISSUE_EXAMPLE)
    assert (manifest.name, manifest.version, manifest.description) == ("demo", "1.0.0", None)
    assert manifest.entrypoint == ["bin/hello", "--root", "{root}"]
    assert manifest.path == tmp_path / "bundle.toml"
    assert manifest.dir == tmp_path
    [hello] = manifest.files
    assert (hello.path, hello.mode, hello.group) == ("bin/hello", 0o755, "files")
    for arch in ARCHS:
        source = manifest.source_for(hello, arch)
        assert (source.url, source.sha256, source.extract) == ("https://example.org/hello", SHA, None)
    [pause] = manifest.images
    assert (pause.name, pause.ref, pause.platform, pause.transport) == (
        "pause",
        "registry.k8s.io/pause:3.10",
        None,
        None,
    )
    assert list(manifest.variants) == ["online", "offline"]
    assert manifest.variant().name == "online"
    assert manifest.variants["online"].embed == ("pause",)
    assert manifest.variants["offline"].embed == ("pause",)


def test_defaults_description_and_groups(tmp_path):
    manifest = load(
        tmp_path,
        HEAD.replace('version = "1.0.0"', 'version = "1.0.0+git.2_rc-1"\ndescription = "a demo"')
        + """
        [[file]]
        path = "etc/config.json"
        source = { url = "config.json" }

        [[file]]
        path = "lib/cni/bridge"
        mode = "755"
        group = "cni"
        source = { url = "/usr/lib/cni/bridge" }
        """,
    )
    assert manifest.version == "1.0.0+git.2_rc-1"
    assert manifest.description == "a demo"
    modes = {spec.path: spec.mode for spec in manifest.files}
    assert modes == {"bin/hello": 0o755, "etc/config.json": 0o644, "lib/cni/bridge": 0o755}
    assert [(spec.path, spec.group) for spec in manifest.files] == [
        ("bin/hello", "files"),
        ("etc/config.json", "files"),
        ("lib/cni/bridge", "cni"),
    ]


def test_per_architecture_sources_and_archives(tmp_path):
    manifest = load(
        tmp_path,
        HEAD
        + f"""
        [[file]]
        path = "bin/crun"
        mode = "0755"
        [file.source.amd64]
        url = "https://github.com/containers/crun/releases/download/1.26/crun-1.26-linux-amd64"
        sha256 = "{SHA}"
        [file.source.arm64]
        url = "https://github.com/containers/crun/releases/download/1.26/crun-1.26-linux-arm64"

        [[file]]
        path = "bin/containerd-shim-runc-v2"
        mode = "0755"
        source.amd64 = {{ url = "https://example.org/c-2.0.0-amd64.tar.gz", extract = "bin/containerd-shim-runc-v2" }}
        source.arm = {{ url = "https://example.org/c.tgz?x=1", extract = "bin/containerd-shim-runc-v2" }}
        source.arm64 = {{ url = "https://example.org/c.tar.xz", extract = "./bin/containerd-shim-runc-v2" }}
        source.riscv64 = {{ url = "archives/c.tar.zst", extract = "bin/containerd-shim-runc-v2" }}

        [[file]]
        path = "bin/containerd"
        mode = "0755"
        source = {{ url = "https://example.org/containerd-2.0.0-linux-amd64.zip", extract = "bin/containerd" }}
        """,
    )
    crun = manifest.file("bin/crun")
    assert set(crun.sources) == {"amd64", "arm64"}
    assert manifest.source_for(crun, "amd64").sha256 == SHA
    assert manifest.source_for("bin/crun", "arm64").url.endswith("crun-1.26-linux-arm64")
    assert manifest.source_for(crun, "arm64").sha256 is None
    shim = manifest.file("bin/containerd-shim-runc-v2")
    assert set(shim.sources) == set(ARCHS)
    assert manifest.source_for(shim, "arm").extract == "bin/containerd-shim-runc-v2"
    assert manifest.source_for("bin/containerd", "riscv64").extract == "bin/containerd"


def test_missing_arch_names_the_file_and_the_arch(tmp_path):
    text = (
        HEAD
        + """
        [[file]]
        path = "bin/crun"                 # <-
        mode = "0755"
        [file.source.amd64]
        url = "https://example.org/crun-amd64"
        """
    )
    manifest = load(tmp_path, text)
    manifest.check_arch("amd64")
    with pytest.raises(UsageError) as caught:
        manifest.source_for(manifest.file("bin/crun"), "arm")
    expected = (
        f"{manifest.path}:{marked_line(text)}: file 'bin/crun' has no source for arch 'arm'; "
        "add [file.source.arm] or drop the file"
    )
    assert str(caught.value) == expected
    with pytest.raises(UsageError) as caught:
        manifest.check_arch("arm")
    assert str(caught.value) == expected


def test_check_arch_reports_every_missing_file_at_once_from_the_manifest_alone(tmp_path):
    # The sources point at a port nothing listens on and at files that do not exist: the answer can only come
    # from the manifest, which is why `make` can give it in the first second, before any download.
    text = (
        HEAD
        + """
        [[file]]
        path = "bin/crun"
        mode = "0755"
        source.amd64 = { url = "http://127.0.0.1:9/crun" }

        [[file]]
        path = "bin/runc"
        source.riscv64 = { url = "missing/runc" }
        source.amd64 = { url = "missing/runc" }

        [[file]]
        path = "lib/cni/bridge"
        source.arm64 = { url = "missing/bridge" }
        """
    )
    manifest = load(tmp_path, text)
    with pytest.raises(UsageError) as caught:
        manifest.check_arch("arm")
    message = str(caught.value)
    assert "\n" not in message
    lines = [line.strip() for line in text.split("\n")]
    crun_line = lines.index('path = "bin/crun"') + 1
    runc_line = lines.index('path = "bin/runc"') + 1
    bridge_line = lines.index('path = "lib/cni/bridge"') + 1
    assert message == (
        f"{manifest.path}:{crun_line}: files 'bin/crun' (line {crun_line}), 'bin/runc' (line {runc_line}), "
        f"'lib/cni/bridge' (line {bridge_line}) have no source for arch 'arm'; "
        "add [file.source.arm] to each or drop them"
    )
    with pytest.raises(UsageError, match=r"'bin/crun' \(line \d+\), 'lib/cni/bridge' .* arch 'riscv64'"):
        manifest.check_arch("riscv64")


@pytest.mark.parametrize(
    "arch, hint",
    [("aarch64", "did you mean 'arm64'?"), ("x86_64", "did you mean 'amd64'?"), ("mips", "choose one of: amd64")],
)
def test_unknown_architecture(tmp_path, arch, hint):
    manifest = load(tmp_path, HEAD)
    with pytest.raises(UsageError, match=f"unknown architecture '{arch}'") as caught:
        manifest.check_arch(arch)
    assert hint in str(caught.value)


def test_images_refs_platforms_and_local_archives(tmp_path):
    manifest = load(
        tmp_path,
        HEAD
        + f"""
        [[image]]
        name = "pause"
        ref = "registry.k8s.io/pause:3.10"

        [[image]]
        name = "busybox"
        ref = "busybox"

        [[image]]
        name = "coredns"
        ref = "127.0.0.1:5000/coredns/coredns:v1.11.3@sha256:{SHA}"
        platform = "linux/arm/v6"

        [[image]]
        name = "app-one"
        ref = "oci-archive:images/one.tar"

        [[image]]
        name = "app-two"
        ref = "docker-archive:../saved/two.tar"
        """,
    )
    pause, busybox, coredns, one, two = manifest.images
    assert [pause.platform_for(arch) for arch in ARCHS] == [
        "linux/amd64",
        "linux/arm64",
        "linux/arm/v7",
        "linux/riscv64",
    ]
    assert busybox.ref == "busybox"
    assert coredns.platform_for("arm") == coredns.platform_for("amd64") == "linux/arm/v6"
    assert (pause.transport, pause.archive_path) == (None, None)
    assert one.transport == "oci-archive"
    assert one.archive_path == tmp_path / "images" / "one.tar"
    assert two.transport == "docker-archive"
    assert two.archive_path == tmp_path.parent / "saved" / "two.tar"
    # No [variants]: one implicit variant that embeds everything.
    assert list(manifest.variants) == ["default"]
    assert manifest.variant(None).embed == ("pause", "busybox", "coredns", "app-one", "app-two")


def test_variants_keep_manifest_order_and_embed_lists(tmp_path):
    manifest = load(
        tmp_path,
        HEAD
        + """
        [[image]]
        name = "pause"
        ref = "registry.k8s.io/pause:3.10"
        [[image]]
        name = "coredns"
        ref = "registry.k8s.io/coredns/coredns:v1.11.3"
        [[image]]
        name = "agent"
        ref = "portainer/agent:2.21.0"

        [variants.small]
        embed = []
        [variants.online]
        embed = [
            "coredns",
            "pause",
        ]
        [variants.offline]
        embed = "all"
        """,
    )
    assert list(manifest.variants) == ["small", "online", "offline"]
    assert manifest.variant().name == "small"
    assert manifest.variant(None).embed == ()
    assert manifest.variant("online").embed == ("coredns", "pause")
    assert manifest.variant("offline").embed == ("pause", "coredns", "agent")
    with pytest.raises(
        UsageError, match=r"unknown variant 'ofline' \(did you mean 'offline'\?\); choose one of: small"
    ):
        manifest.variant("ofline")


def test_variant_without_embed_embeds_nothing(tmp_path):
    manifest = load(tmp_path, HEAD + '\n[[image]]\nname = "pause"\nref = "pause:3.10"\n[variants.bare]\n')
    assert manifest.variant("bare").embed == ()
    assert manifest.variant("bare").pull == "background"


def test_variant_pull_before_start(tmp_path):
    manifest = load(tmp_path, HEAD + '\n[variants.eager]\npull = "before-start"\n')
    assert manifest.variant("eager").pull == "before-start"


# -- where file sources resolve -------------------------------------------------------------------------------


def path_of_file_url(url):
    parts = urllib.parse.urlsplit(url)
    assert parts.scheme == "file" and parts.netloc == ""
    return urllib.request.url2pathname(parts.path)


def test_relative_paths_resolve_against_the_manifest_dir_not_the_cwd(tmp_path, monkeypatch):
    project = tmp_path / "my project"
    project.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (project / "bin").mkdir()
    (project / "bin" / "hello world.sh").write_text("#!/bin/sh\n")
    manifest_path = write(
        project,
        HEAD
        + """
        [[file]]
        path = "bin/a"
        source = { url = "bin/hello world.sh" }
        [[file]]
        path = "bin/b"
        source = { url = "../shared/b" }
        [[file]]
        path = "bin/c"
        source = { url = "/usr/bin/env" }
        [[file]]
        path = "bin/d"
        source = { url = "file:///usr/bin/env" }
        [[file]]
        path = "bin/e"
        source = { url = "http://127.0.0.1:8080/e?x=1" }
        """,
    )
    monkeypatch.chdir(elsewhere)
    manifest = load_manifest(os.path.relpath(manifest_path, elsewhere))
    assert manifest.dir == project

    def url(path):
        return resolve_url(manifest.source_for(path, "amd64"))

    assert path_of_file_url(url("bin/a")) == str(project / "bin" / "hello world.sh")
    assert Path(path_of_file_url(url("bin/a"))).read_text() == "#!/bin/sh\n"
    assert path_of_file_url(url("bin/b")) == str(tmp_path / "shared" / "b")
    assert path_of_file_url(url("bin/c")) == "/usr/bin/env"
    assert url("bin/d") == "file:///usr/bin/env"
    assert url("bin/e") == "http://127.0.0.1:8080/e?x=1"
    assert url("bin/hello") == (project / "hello.sh").as_uri()


# -- errors ---------------------------------------------------------------------------------------------------


def test_syntax_error_names_the_line(tmp_path):
    text = """\
        [bundle]
        name = "demo"
        version = 1.0.0          # <-
        """
    assert_error_at_mark(
        tmp_path,
        text,
        "invalid TOML: expected newline or end of document after a statement at column",
        "fix the syntax there",
    )


def test_syntax_error_at_end_points_at_the_unclosed_value(tmp_path):
    text = """\
        [bundle]
        name = "demo"
        entrypoint = ["bin/hello",      # <-
          "--flag",

        [[file]]
        path = "bin/hello"
        """
    assert_error_at_mark(tmp_path, text, "invalid TOML", "inside a value that opens here; close its bracket or string")
    text = """\
        [bundle]
        name = "demo"
        entrypoint = [          # <-
          "bin/hello",
        """
    assert_error_at_mark(tmp_path, text, "at the end of the file; close the bracket or string that opens here")


def test_duplicate_key_is_a_syntax_error_with_its_line(tmp_path):
    text = HEAD.replace('version = "1.0.0"', 'version = "1.0.0"\nname = "again"          # <-')
    assert_error_at_mark(tmp_path, text, "cannot overwrite a value")


def test_not_utf8(tmp_path):
    path = tmp_path / "bundle.toml"
    path.write_bytes(b'[bundle]\nname = "d\xe9mo"\n')
    with pytest.raises(UsageError, match=r":2: not valid UTF-8; save the manifest as UTF-8"):
        load_manifest(path)


def test_missing_manifest(tmp_path):
    with pytest.raises(UsageError, match=r"bundle.toml: no such manifest; .*--manifest PATH"):
        load_manifest(tmp_path / "bundle.toml")


ERRORS = {
    "unknown key with suggestion": (
        """\
        [bundle]
        name = "demo"
        version = "1.0.0"
        entrypiont = ["bin/hello"]      # <-
        """,
        ["unknown key 'entrypiont' in [bundle]; did you mean 'entrypoint'?"],
    ),
    "unknown key without close match": (
        HEAD + 'colour = "blue"         # <-\n',
        ["unknown key 'colour' in [[file]]; remove it (known keys: path, mode, group, source, license)"],
    ),
    "unknown key in a per-arch source": (
        HEAD + f'[[file]]\npath = "x"\n[file.source.arm64]\nurl = "x"\nsha265 = "{SHA}"   # <-\n',
        ["unknown key 'sha265' in [file.source.arm64]; did you mean 'sha256'?"],
    ),
    "unknown key in an inline source": (
        HEAD + '[[file]]\npath = "x"\nsource = { uri = "x" }   # <-\n',
        ["unknown key 'uri' in [file.source]; did you mean 'url'?"],
    ),
    "architecture under another name": (
        HEAD + '[[file]]\npath = "x"\n[file.source.aarch64]   # <-\nurl = "x"\n',
        ["unknown key 'aarch64' in [file.source]; did you mean 'arm64'?"],
    ),
    "unknown key in an image": (
        HEAD + '[[image]]\nname = "pause"\nreference = "pause:3.10"   # <-\n',
        ["unknown key 'reference' in [[image]]; did you mean 'ref'?"],
    ),
    "unknown key in a variant": (
        HEAD + "[variants.online]\nembeds = []   # <-\n",
        ["unknown key 'embeds' in [variants.online]; did you mean 'embed'?"],
    ),
    "unknown pull mode": (
        HEAD + '[variants.online]\npull = "first"   # <-\n',
        [
            'pull in [variants.online] must be "background" or "before-start"; '
            'write pull = "before-start" or leave it out'
        ],
    ),
    "unknown top-level table": (
        HEAD + "[variant.online]   # <-\n",
        ["unknown key 'variant' in the top level; did you mean 'variants'?"],
    ),
    "bundle key at the top level": (
        'name = "demo"   # <-\n' + HEAD,
        ["unknown key 'name' in the top level; move it under [bundle]"],
    ),
    "no bundle table": (
        '[[file]]   # <-\npath = "x"\nsource = { url = "x" }\n',
        ["no [bundle] table; add [bundle]"],
    ),
    "upper-case name": (
        HEAD.replace('name = "demo"', 'name = "Demo"   # <-'),
        ["bundle name 'Demo' is not allowed; use lower-case letters, digits and '-', starting with a letter"],
    ),
    "name starting with a digit": (HEAD.replace('name = "demo"', 'name = "1demo"   # <-'), ["bundle name '1demo'"]),
    "name with an underscore": (HEAD.replace('name = "demo"', 'name = "my_demo"   # <-'), ["bundle name 'my_demo'"]),
    "name not a string": (HEAD.replace('name = "demo"', "name = 7   # <-"), ["name in [bundle] must be a string"]),
    "name missing": (
        HEAD.replace("[bundle]", "[bundle]   # <-").replace('name = "demo"\n', ""),
        ["[bundle] has no 'name'; add name = \"demo\""],
    ),
    "bad version": (HEAD.replace('version = "1.0.0"', 'version = "1.0 beta"   # <-'), ["version '1.0 beta'"]),
    "empty version": (HEAD.replace('version = "1.0.0"', 'version = ""   # <-'), ["version ''"]),
    "duplicate path": (
        HEAD + '[[file]]\npath = "bin/hello"   # <-\nsource = { url = "other" }\n',
        ["duplicate file path 'bin/hello' (first at line 7); give each [[file]] its own path"],
    ),
    "dot-dot path": (
        HEAD + '[[file]]\npath = "bin/../../etc/passwd"   # <-\nsource = { url = "x" }\n',
        ["contains '..'; files must stay inside the installed root"],
    ),
    "absolute path": (
        HEAD + '[[file]]\npath = "/usr/bin/crun"   # <-\nsource = { url = "x" }\n',
        ["path '/usr/bin/crun' is absolute; write it relative to the installed root, like 'usr/bin/crun'"],
    ),
    "path not normalised": (
        HEAD + '[[file]]\npath = "./bin//crun"   # <-\nsource = { url = "x" }\n',
        ["path './bin//crun' is not normalised; write 'bin/crun'"],
    ),
    "path with a backslash": (
        HEAD + '[[file]]\npath = "etc\\\\conf"   # <-\nsource = { url = "x" }\n',
        ["path 'etc\\conf' holds a backslash, which devices refuse; separate directories with '/', like 'etc/conf'"],
    ),
    "setuid mode": (
        HEAD + '[[file]]\npath = "bin/su"\nmode = "4755"   # <-\nsource = { url = "x" }\n',
        ["mode '4755' of 'bin/su' sets setuid, setgid or sticky bits, which bundles refuse", 'mode = "0755"'],
    ),
    "group-writable mode": (
        HEAD + '[[file]]\npath = "bin/tool"\nmode = "0775"   # <-\nsource = { url = "x" }\n',
        ["mode '0775' of 'bin/tool' lets other users write the installed file", 'mode = "0755"'],
    ),
    "world-writable mode": (
        HEAD + '[[file]]\npath = "etc/conf"\nmode = "666"   # <-\nsource = { url = "x" }\n',
        ["mode '666' of 'etc/conf' lets other users write the installed file", 'mode = "0644"'],
    ),
    "path the installer keeps for itself": (
        HEAD + '[[file]]\npath = ".bundle-installed"   # <-\nsource = { url = "x" }\n',
        ["path '.bundle-installed' starts with '.bundle-', a name the installer keeps for its own records"],
    ),
    "empty path": (HEAD + '[[file]]\npath = ""   # <-\nsource = { url = "x" }\n', ["path '' is empty"]),
    "file under another file": (
        HEAD + '[[file]]\npath = "bin/hello/extra"   # <-\nsource = { url = "x" }\n',
        ["'bin/hello/extra' lies under 'bin/hello', which is a [[file]] itself (line 7); rename one of them"],
    ),
    "file table written with one bracket": (
        HEAD.replace("[[file]]", "[[image]]").replace(
            'path = "bin/hello"\nmode = "0755"\nsource = { url = "hello.sh" }', 'name = "x"\nref = "x"'
        )
        + '[file]   # <-\npath = "bin/hello"\n',
        ["'file' must be an array of tables; write [[file]] (two brackets)"],
    ),
    "missing source": (
        HEAD + '[[file]]\npath = "bin/x"   # <-\n',
        ["file 'bin/x' has no source; add source = { url = \"https://...\" } or [file.source.<arch>] tables"],
    ),
    "source mixing url and arch tables": (
        HEAD + '[[file]]\npath = "bin/x"\n[file.source]\nurl = "a"   # <-\n[file.source.arm64]\nurl = "b"\n',
        ["mixes 'url' with per-architecture tables"],
    ),
    "arch source given as a string": (
        HEAD + '[[file]]\npath = "bin/x"\nsource = { amd64 = "https://example.org/x" }   # <-\n',
        ["unknown key 'amd64' in [file.source]; write [file.source.amd64] with url"],
    ),
    "source without url": (
        HEAD + f'[[file]]\npath = "bin/x"\n[file.source.amd64]   # <-\nsha256 = "{SHA}"\n',
        ["[file.source.amd64] has no 'url'; add url ="],
    ),
    "unsupported url scheme": (
        HEAD + '[[file]]\npath = "bin/x"\nsource = { url = "ftp://example.org/x" }   # <-\n',
        ["url scheme 'ftp' is not supported; use https://, http://, file:// or a path relative to the manifest"],
    ),
    "url without host": (
        HEAD + '[[file]]\npath = "bin/x"\nsource = { url = "https:///x" }   # <-\n',
        ["url 'https:///x' has no host"],
    ),
    "relative file url": (
        HEAD + '[[file]]\npath = "bin/x"\nsource = { url = "file://bin/x" }   # <-\n',
        ["is not an absolute file URL"],
    ),
    "upper-case sha256": (
        HEAD + f'[[file]]\npath = "bin/x"\n[file.source.amd64]\nurl = "x"\nsha256 = "{SHA.upper()}"   # <-\n',
        ["sha256 must be 64 lower-case hex digits"],
    ),
    "short sha256": (
        HEAD + '[[file]]\npath = "bin/x"\nsource = { url = "x", sha256 = "abc" }   # <-\n',
        ["sha256 must be 64 lower-case hex digits"],
    ),
    "extract from something that is not an archive": (
        HEAD + '[[file]]\npath = "bin/x"\nsource = { url = "https://e.org/x.tar.bz2", extract = "x" }   # <-\n',
        ["extract needs an archive, but url 'https://e.org/x.tar.bz2' does not end in .tar.gz, .tgz"],
    ),
    "extract escaping the archive": (
        HEAD + '[[file]]\npath = "bin/x"\nsource = { url = "x.tgz", extract = "../x" }   # <-\n',
        ["extract '../x' must be a relative member path without '..'"],
    ),
    "mode not octal": (
        HEAD.replace('mode = "0755"', 'mode = "0789"   # <-'),
        ["mode '0789' of 'bin/hello' is not an octal string"],
    ),
    "mode as an integer": (
        HEAD.replace('mode = "0755"', "mode = 755   # <-"),
        ["mode 755 of 'bin/hello' is not an octal string; write mode = \"0755\""],
    ),
    "bad group": (
        HEAD + '[[file]]\npath = "x"\ngroup = "Big Group"   # <-\nsource = { url = "x" }\n',
        ["group 'Big Group'"],
    ),
    "entrypoint not a file": (
        HEAD.replace('entrypoint = ["bin/hello"]', 'entrypoint = ["bin/helo", "--flag"]   # <-'),
        [
            "entrypoint program 'bin/helo' is not a [[file]] path; use one of the [[file]] paths (did you mean "
            "'bin/hello'?)"
        ],
    ),
    "entrypoint with root placeholder": (
        HEAD.replace('entrypoint = ["bin/hello"]', 'entrypoint = ["{root}/bin/hello"]   # <-'),
        [
            "entrypoint program '{root}/bin/hello' must be a [[file]] path relative to the installed root; write "
            "'bin/hello'"
        ],
    ),
    "entrypoint not executable": (
        HEAD.replace('mode = "0755"\n', "").replace('entrypoint = ["bin/hello"]', 'entrypoint = ["bin/hello"]   # <-'),
        ["entrypoint program 'bin/hello' is not executable (mode 0644); set mode = \"0755\" on its [[file]] (line 7)"],
    ),
    "entrypoint empty": (
        HEAD.replace('entrypoint = ["bin/hello"]', "entrypoint = []   # <-"),
        ["entrypoint must be a non-empty list of strings"],
    ),
    "entrypoint a string": (
        HEAD.replace('entrypoint = ["bin/hello"]', 'entrypoint = "bin/hello"   # <-'),
        ["entrypoint must be a non-empty list of strings"],
    ),
    "unknown placeholder": (
        HEAD.replace('entrypoint = ["bin/hello"]', 'entrypoint = [\n  "bin/hello",\n  "--data={rot}/data",   # <-\n]'),
        ["unknown placeholder {rot} in entrypoint (did you mean '{root}'?); use {root}, {images} or {data}"],
    ),
    "variant naming an unknown image": (
        HEAD
        + '[[image]]\nname = "pause"\nref = "registry.k8s.io/pause:3.10"\n'
        + '[variants.online]\nembed = [\n  "pause",\n  "coredns",   # <-\n]\n',
        ["[variants.online] embeds 'coredns', which is not an [[image]]; declare it or remove it (declared: pause)"],
    ),
    "variant image typo": (
        HEAD + '[[image]]\nname = "pause"\nref = "pause:3.10"\n[variants.online]\nembed = ["pasue"]   # <-\n',
        ["embeds 'pasue', which is not an [[image]] (did you mean 'pause'?)"],
    ),
    "variant listing an image twice": (
        HEAD + '[[image]]\nname = "pause"\nref = "pause:3.10"\n[variants.online]\nembed = ["pause", "pause"]   # <-\n',
        ["[variants.online] lists 'pause' twice"],
    ),
    "variant embed neither list nor all": (
        HEAD + '[variants.online]\nembed = "none"   # <-\n',
        ['embed in [variants.online] must be "all" or a list of image names'],
    ),
    "bad variant name": (HEAD + "[variants.Online]   # <-\nembed = []\n", ["variant name 'Online' is not allowed"]),
    "variant not a table": (HEAD + "[variants]\nonline = 3   # <-\n", ["[variants.online] must be a table"]),
    "duplicate image name": (
        HEAD + '[[image]]\nname = "pause"\nref = "pause:3.9"\n[[image]]\nname = "pause"   # <-\nref = "pause:3.10"\n',
        ["duplicate image name 'pause' (first at line"],
    ),
    "bad image name": (
        HEAD + '[[image]]\nname = "Pause"   # <-\nref = "pause:3.10"\n',
        ["image name 'Pause' is not allowed"],
    ),
    "bad image ref": (
        HEAD + '[[image]]\nname = "pause"\nref = "Registry.k8s.io/Pause:3.10"   # <-\n',
        ["invalid image reference 'Registry.k8s.io/Pause:3.10'", "; write it like registry.k8s.io/pause:3.10"],
    ),
    "image ref with a scheme": (
        HEAD + '[[image]]\nname = "pause"\nref = "docker://pause:3.10"   # <-\n',
        ["drop the scheme"],
    ),
    "short digest": (
        HEAD + '[[image]]\nname = "p"\nref = "pause@sha256:abc"   # <-\n',
        ["invalid image reference 'pause@sha256:abc'"],
    ),
    "archive ref without a path": (
        HEAD + '[[image]]\nname = "p"\nref = "oci-archive:"   # <-\n',
        ["image ref 'oci-archive:' names no file; write oci-archive:path/to/image.tar"],
    ),
    "bad platform": (
        HEAD + '[[image]]\nname = "p"\nref = "pause:3.10"\nplatform = "arm64"   # <-\n',
        ["platform 'arm64' is not os/arch[/variant]"],
    ),
}


@pytest.mark.parametrize("text, fragments", ERRORS.values(), ids=ERRORS.keys())
def test_error_points_at_the_offending_line(tmp_path, text, fragments):
    assert_error_at_mark(tmp_path, text, *fragments)


def test_dotted_and_quoted_keys_are_located(tmp_path):
    text = (
        HEAD
        + """
        [[file]]
        "path" = "bin/x"
        source.'amd64'.url = "x"
        source.amd64.sah256 = "x"   # <-
        """
    )
    assert_error_at_mark(tmp_path, text, "unknown key 'sah256' in [file.source.amd64]; did you mean 'sha256'?")


def test_brackets_inside_strings_and_multiline_strings_do_not_confuse_line_finding(tmp_path):
    text = '''\
        [bundle]
        name = "demo"
        version = "1.0.0"
        description = """
        [[file]]
        path = "not/a/table" ]]
        """
        entrypoint = ["bin/hello", "[x", "{images}", "{\\"json\\": 1}"]

        [[file]]
        path = "bin/hello"
        mode = "0755"
        source = { url = "a[b]" }

        [[file]]
        path = "bin/hello"   # <-
        source = { url = "b" }
        '''
    rest = assert_error_at_mark(tmp_path, text, "duplicate file path 'bin/hello' (first at line 11)")
    assert rest


def test_braces_that_are_not_placeholders_are_kept(tmp_path):
    manifest = load(
        tmp_path,
        HEAD.replace('entrypoint = ["bin/hello"]', 'entrypoint = ["bin/hello", "{\\"a\\": 1}", "{}", "{images}/x"]'),
    )
    assert manifest.entrypoint == ["bin/hello", '{"a": 1}', "{}", "{images}/x"]


def test_the_documented_example_loads(tmp_path):
    docs = Path(__file__).resolve().parents[3] / "docs" / "manifest.md"
    example = docs.read_text().split("```toml\n", 1)[1].split("```", 1)[0]
    manifest = load(tmp_path, example)
    assert [spec.path for spec in manifest.files] == [
        "bin/hello",
        "bin/crun",
        "bin/containerd-shim-runc-v2",
        "etc/config.toml",
    ]
    assert list(dict.fromkeys(spec.group for spec in manifest.files)) == ["files", "runtime"]
    assert manifest.variant("online").embed == ("pause",)
    assert manifest.variant("offline").embed == ("pause", "app")
    with pytest.raises(UsageError, match="'bin/crun' \\(line \\d+\\), 'bin/containerd-shim-runc-v2'"):
        manifest.check_arch("arm")


def test_resolve_url_method_matches_the_function(tmp_path):
    manifest = load(tmp_path, HEAD)
    source = manifest.source_for("bin/hello", "arm")
    assert manifest.resolve_url(source) == resolve_url(source) == (tmp_path / "hello.sh").as_uri()


def test_the_images_group_is_reserved_for_embedded_images(tmp_path):
    from bundler.manifest import load_manifest
    from payload.errors import UsageError

    path = tmp_path / "bundle.toml"
    path.write_text(
        '[bundle]\nname = "x"\nversion = "1"\nentrypoint = ["bin/x"]\n\n'
        '[[file]]\npath = "bin/x"\nmode = "0755"\ngroup = "images"\nsource = { url = "x" }\n'
    )
    with pytest.raises(UsageError, match=r"bundle.toml:9: group 'images' is where bundler keeps embedded images"):
        load_manifest(path)


def test_every_placeholder_the_device_expands_is_accepted(tmp_path):
    """README: {root}, {images} and {data} expand in the entrypoint, and stub/launch.py expands all three."""
    from stub.launch import command

    text = HEAD.replace(
        'entrypoint = ["bin/hello"]', 'entrypoint = ["bin/hello", "{root}", "{images}", "--state={data}/x"]'
    )
    manifest = load(tmp_path, text)
    inst = type("Inst", (), {"path": "/r/id", "images": "/r/id/images", "data": "/r/data"})()
    assert command(manifest.entrypoint, inst, ["a"]) == [
        "/r/id/bin/hello",
        "/r/id",
        "/r/id/images",
        "--state=/r/data/x",
        "a",
    ]


def test_a_utf8_byte_order_mark_is_accepted(tmp_path):
    path = tmp_path / "bundle.toml"
    path.write_bytes(b"\xef\xbb\xbf" + HEAD.encode())  # what some Windows editors write
    assert load_manifest(path).name == "demo"


def test_update_repository_is_optional_and_must_be_a_tag_reference(tmp_path):
    assert load(tmp_path, HEAD).update_repository is None
    manifest = load(tmp_path, HEAD + '\n[update]\nrepository = "registry.example:5000/edge/demo:stable"\n')
    assert manifest.update_repository == "registry.example:5000/edge/demo:stable"
    digest = "sha256:" + "a" * 64
    assert_error_at_mark(
        tmp_path, HEAD + f'\n[update]\nrepository = "r.example/edge/demo@{digest}"  # <-\n', "not REGISTRY/REPO[:TAG]"
    )
    assert_error_at_mark(tmp_path, HEAD + '\n[update]\nrepository = "Not A Ref"  # <-\n', "not REGISTRY/REPO[:TAG]")
    assert_error_at_mark(tmp_path, HEAD + '\n[update]\nrepo = "r.example/x"  # <-\n', "did you mean 'repository'")


def test_update_settings_are_read_and_only_those_not_at_their_default_kept(tmp_path):
    assert load(tmp_path, HEAD).update_policy == {}
    manifest = load(
        tmp_path,
        HEAD + '\n[update]\nhealth = ["bin/hello", "--check"]\nhealth_delay = 2.5\nprobation_starts = 3\nkeep = 4\n',
    )
    assert manifest.update_repository is None  # [update] without a repository: the settings alone
    assert manifest.update_policy == {"health": ["bin/hello", "--check"], "health_delay": 2.5, "keep": 4}


@pytest.mark.parametrize(
    "line, fragment",
    [
        ('health = "bin/hello"', "health in [update] must be a non-empty list of strings"),
        ('health = ["bin/check"]', "health command 'bin/check' is not a [[file]] path"),
        ('health = ["/usr/bin/true"]', "must start with a file of the bundle"),
        ("health_delay = -1", "health_delay in [update] must be a number of seconds; write health_delay = 30"),
        ('health_timeout = "60"', "health_timeout in [update] must be a number of seconds"),
        ("health_timeout = 0", "more than 0 seconds"),
        ("probation_starts = 0", "probation_starts in [update] must be a whole number from 1 to 1000"),
        ("keep = 2.5", "keep in [update] must be a whole number"),
        ("kept = 2", "did you mean 'keep'"),
    ],
)
def test_bad_update_settings_are_refused_at_their_line(tmp_path, line, fragment):
    assert_error_at_mark(tmp_path, HEAD + f"\n[update]\n{line}  # <-\n", fragment)

"""stub/launch: the argv and environment the runtime gets (the exec itself: tests/stub/test_main.py)."""

from types import SimpleNamespace

from stub import launch
from stub.root import Installation

INDEX = SimpleNamespace(name="demo", version="1.0.0", variant="offline", arch="amd64")
BUNDLE_ID = "ab" * 32


def test_placeholders_expand_and_the_args_pass_untouched(tmp_path):
    inst = Installation(str(tmp_path), BUNDLE_ID)
    argv = launch.command(
        ["bin/run", "--images={images}", "--state", "{data}/x", "{root}"], inst, ["{root}", "--bundle-dir", ""]
    )
    assert argv == [
        inst.path + "/bin/run",
        "--images=" + inst.images,
        "--state",
        inst.data + "/x",
        inst.path,
        "{root}",
        "--bundle-dir",
        "",
    ]  # the user's args are never expanded


def test_the_environment_loses_pyinstaller_traces_and_gains_the_bundle(tmp_path):
    inst = Installation(str(tmp_path), BUNDLE_ID)
    environ = {
        "PATH": "/bin",
        "LD_LIBRARY_PATH": "/tmp/_MEI123:/opt/lib",
        "LD_LIBRARY_PATH_ORIG": "/opt/lib",
        "_PYI_ARCHIVE_FILE": "/x",
        "_PYI_PARENT_PROCESS_LEVEL": "1",
        "_MEIPASS2": "/tmp/_MEI123",
    }
    env = launch.environment(environ, inst, INDEX)
    assert "BUNDLE_EXECUTABLE" not in env
    assert launch.environment(environ, inst, INDEX, "/opt/app")["BUNDLE_EXECUTABLE"] == "/opt/app"
    # One a parent bundle's runtime passed on does not name this bundle: dropped when this one's is not known.
    assert "BUNDLE_EXECUTABLE" not in launch.environment({**environ, "BUNDLE_EXECUTABLE": "/other"}, inst, INDEX)
    assert env["LD_LIBRARY_PATH"] == "/opt/lib" and "LD_LIBRARY_PATH_ORIG" not in env
    assert not [k for k in env if k.startswith("_PYI") or k == "_MEIPASS2"]
    assert env["PATH"] == "/bin"
    assert (env["BUNDLE_ROOT"], env["BUNDLE_IMAGES"], env["BUNDLE_DATA"]) == (inst.path, inst.images, inst.data)
    assert (env["BUNDLE_ID"], env["BUNDLE_NAME"], env["BUNDLE_VERSION"], env["BUNDLE_VARIANT"], env["BUNDLE_ARCH"]) == (
        BUNDLE_ID,
        "demo",
        "1.0.0",
        "offline",
        "amd64",
    )
    assert environ["LD_LIBRARY_PATH"].startswith("/tmp/_MEI")  # the caller's dict is left alone


def test_prepare_data_creates_the_state_directory(tmp_path):
    inst = Installation(str(tmp_path), BUNDLE_ID)
    launch.prepare_data(inst)
    launch.prepare_data(inst)  # there already: fine
    assert (tmp_path / "data").is_dir()

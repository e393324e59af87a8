"""The suite's own hygiene (DESIGN §7), proven on small pytest sessions run in a subprocess:
a process a test leaves running fails the session, naming it; a shared server that dies
fails the test that killed it, with its log, and the next test gets a fresh one."""

from __future__ import annotations

import os
import signal
import sys
import textwrap
from pathlib import Path

from tests.conftest import ROOT, group_alive, run_process

# The inner session loads this suite's conftest as a plugin: its registry, its hook.
CONFTEST = 'pytest_plugins = ["tests.conftest"]\n'


def run_pytest(directory: Path, files: dict[str, str]) -> tuple[int, str]:
    """Run pytest on ``files`` (written into ``directory``); its exit code and output."""
    directory.mkdir()
    for name, text in {"conftest.py": CONFTEST, **files}.items():
        (directory / name).write_text(textwrap.dedent(text))
    basetemp = f"--basetemp={directory / 'tmp'}"
    result = run_process(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rA", basetemp, str(directory)],
        timeout=120,
        cwd=directory,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    return result.returncode, result.stdout + result.stderr


CLEAN = """
    from tests.conftest import kill_group, spawn

    def test_stops_what_it_starts():
        kill_group(spawn(["sleep", "601"]))
"""

LEAKY = """
    from pathlib import Path

    from tests.conftest import spawn

    def test_leaves_a_process_running():
        process = spawn(["sleep", "600"])
        (Path(__file__).parent / "pid").write_text(str(process.pid))
"""


def test_a_process_left_running_fails_the_session_and_is_named(tmp_path: Path) -> None:
    code, output = run_pytest(tmp_path / "clean", {"test_clean.py": CLEAN})
    assert code == 0, output  # a process stopped in time is no failure

    code, output = run_pytest(tmp_path / "leaky", {"test_clean.py": CLEAN, "test_leaky.py": LEAKY})
    pid = int((tmp_path / "leaky" / "pid").read_text())
    try:
        assert "2 passed" in output
        assert code == 1, output  # the tests passed; the session did not
        assert "processes left running" in output
        assert f"pid {pid}: sleep 600" in output
        assert "sleep 601" not in output
        assert not group_alive(pid)  # killed once named: it does not outlive the session
    finally:
        if group_alive(pid):
            os.killpg(pid, signal.SIGKILL)


CRASHY_APP = """
    import os


    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["path"] == "/crash":
            print("crashy: goodbye from pid", os.getpid(), flush=True)
            os._exit(3)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})
"""

CRASHING_TESTS = """
    import contextlib
    import os
    import urllib.request
    from pathlib import Path

    import pytest

    from tests.conftest import ROOT, SharedServer

    PIDS = []


    @pytest.fixture(scope="module")
    def servers(tmp_path_factory):
        env = {"PYTHONPATH": f"{ROOT}{os.pathsep}{Path(__file__).parent}"}  # for crashy.py
        with SharedServer("uvicorn-asyncio", "crashy:app", tmp_path_factory, env) as shared:
            yield shared


    @pytest.fixture
    def server(servers, request):
        yield from servers.lend(request)


    def test_crashes_the_server(server):
        PIDS.append(server.process.pid)
        with contextlib.suppress(OSError):
            urllib.request.urlopen(server.url + "/crash", timeout=10)
        server.process.wait(timeout=10)  # it is gone; this test passes, its teardown fails


    def test_gets_a_fresh_server(server):
        assert server.process.pid not in PIDS
        with urllib.request.urlopen(server.url + "/health", timeout=10) as response:
            assert response.read() == b"ok"
"""


def test_a_server_that_dies_fails_its_test_with_the_log_and_the_next_gets_a_fresh_one(
    tmp_path: Path,
) -> None:
    code, output = run_pytest(
        tmp_path / "crash", {"crashy.py": CRASHY_APP, "test_crash.py": CRASHING_TESTS}
    )
    assert code == 1, output
    assert "2 passed, 1 error" in output, output
    assert "ERROR test_crash.py::test_crashes_the_server" in output, output
    assert "PASSED test_crash.py::test_gets_a_fresh_server" in output, output
    assert "the server process exited with 3 during this test" in output, output
    assert "crashy: goodbye from pid" in output, output  # the log is attached
    assert "processes left running" not in output, output

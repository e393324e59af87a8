"""Every code block of README.md and docs/ is checked, so none can rot (see blocks.py for how
a page says what a block needs): Python blocks are type-checked with ``mypy --strict``, all
in one run, and run, each in a process of its own, on asyncio and on trio; JavaScript
blocks are checked for syntax by Node.

A block that names Redis at ``redis://127.0.0.1:6379`` runs against a redis-server of the
test session's own, on a free port (it fails under CI without one, like every Redis test).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import run_process
from tests.docs.blocks import ROOT, Block, all_blocks

BLOCKS = all_blocks()
PYTHON = [b for b in BLOCKS if b.lang == "python"]
RUNS = [b for b in PYTHON if b.mode in ("run", "pytest")]
SCRIPTS = [b for b in BLOCKS if b.lang in ("js", "javascript")]
BACKENDS = ("asyncio", "trio")
DOCS_REDIS = "redis://127.0.0.1:6379"
RUNNER = ROOT / "tests" / "docs" / "runner.py"
# The type checker's settings for blocks: what a user's `mypy --strict` would say, less the
# stubs python-socketio does not ship (its clients, and its server for comparison, appear
# in the guides: its decorators are untyped).
MYPY_INI = """\
[mypy]
strict = True
python_version = 3.11
disallow_untyped_decorators = False

[mypy-socketio.*,engineio.*]
ignore_missing_imports = True
"""


def ids(blocks: list[Block]) -> list[str]:
    return [block.name for block in blocks]


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_runner_runs_a_block_on_the_backend_asked(backend: str, tmp_path: Path) -> None:
    (tmp_path / "block.py").write_text(
        "import anyio, sniffio\n\n"
        "async def main() -> None:\n"
        f"    assert sniffio.current_async_library() == {backend!r}\n\n"
        "anyio.run(main)\n"
    )
    command = [sys.executable, "-W", "error", str(RUNNER), "block.py", backend]
    result = run_process(command, timeout=120, cwd=tmp_path, env=block_env())
    assert result.returncode == 0, result.stderr


def test_the_pages_have_code_to_check() -> None:
    # A pattern that silently matched nothing would make every other test here vacuous.
    assert len(PYTHON) >= 20
    assert any(block.path.name == "README.md" for block in RUNS)


@pytest.fixture(scope="module")
def mypy_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """Type-check every Python block: block name -> mypy's error lines. The blocks that
    stand alone share one run, each as a module of its own; a block that imports files its
    page saved is checked beside them, in a run of its own."""
    report: dict[str, list[str]] = {}
    alone = [block for block in PYTHON if not block.siblings]
    folder = tmp_path_factory.mktemp("typecheck")
    files = {f"{block.module}.py": block for block in alone}
    for name, block in files.items():
        (folder / name).write_text(block.code)
    report |= mypy(folder, files)
    for block in PYTHON:
        if block.siblings:
            folder = tmp_path_factory.mktemp("typecheck")
            for name, code in block.siblings:
                (folder / name).write_text(code)
            (folder / file_name(block)).write_text(block.code)
            report |= mypy(folder, {file_name(block): block})
    return report


def mypy(folder: Path, files: dict[str, Block]) -> dict[str, list[str]]:
    """Run mypy on ``files`` (file name -> block) in ``folder``; block name -> errors."""
    (folder / "mypy.ini").write_text(MYPY_INI)
    command = [sys.executable, "-m", "mypy", "--config-file", "mypy.ini", "--no-error-summary"]
    command += ["--cache-dir", str(ROOT / ".mypy_cache" / "code-blocks"), *files]
    result = run_process(command, timeout=600, cwd=folder)
    if result.returncode not in (0, 1) or result.stderr.strip():
        pytest.fail(f"mypy did not run: {result.returncode}\n{result.stdout}\n{result.stderr}")
    report: dict[str, list[str]] = {block.name: [] for block in files.values()}
    for line in result.stdout.splitlines():
        block = files.get(line.split(":", 1)[0])
        if block is None:  # about a sibling: its own check reports it
            continue
        report[block.name].append(line)
    return report


def file_name(block: Block) -> str:
    """What the block is saved as when it runs: its page's name for it, or a test module's
    or a script's name."""
    if block.saved_as is not None:
        return block.saved_as
    return "test_block.py" if block.mode == "pytest" else "block.py"


@pytest.mark.parametrize("block", PYTHON, ids=ids(PYTHON))
def test_python_block_type_checks(block: Block, mypy_report: dict[str, list[str]]) -> None:
    errors = mypy_report[block.name]
    assert not errors, f"{block.name}: mypy --strict says\n" + "\n".join(errors) + numbered(block)


@pytest.fixture(scope="module")
def redis_for_blocks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str | None]:
    """A redis-server for the blocks that name one, started only if some block does; None
    without one on a developer's machine (those blocks are skipped; under CI they fail)."""
    if not any(DOCS_REDIS in block.code for block in RUNS):
        yield None
        return
    if shutil.which("redis-server") is None and not os.environ.get("CI"):
        yield None
        return
    from tests.redisserver import RedisServer

    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server.url.removesuffix("/0")
    server.stop()


@pytest.fixture(scope="module")
def runs(
    tmp_path_factory: pytest.TempPathFactory, redis_for_blocks: str | None
) -> dict[tuple[str, str], subprocess.CompletedProcess[str]]:
    """Every runnable block on every backend, a process each: (block name, backend) -> how
    it went. They run two at a time (a block is mostly the interpreter starting), except
    those that use Redis: one after the other, on an emptied Redis (pub/sub channels are
    shared by every database, so two at once would hear each other)."""
    jobs: list[tuple[Block, str]] = []
    for block in RUNS:
        jobs += [(block, backend) for backend in BACKENDS] if block.mode == "run" else [(block, "")]

    def run(job: tuple[Block, str]) -> subprocess.CompletedProcess[str]:
        block, backend = job
        folder = tmp_path_factory.mktemp("block")
        for name, code in [*block.siblings, (file_name(block), block.code)]:
            if redis_for_blocks is not None:
                code = code.replace(DOCS_REDIS, redis_for_blocks)
            (folder / name).write_text(code)
        if block.mode == "pytest":
            command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
            command += ["-W", "error", file_name(block)]
        else:
            command = [sys.executable, "-W", "error", str(RUNNER), file_name(block), backend]
        return run_process(command, timeout=120, cwd=folder, env=block_env())

    def run_on_redis(jobs: list[tuple[Block, str]]) -> list[subprocess.CompletedProcess[str]]:
        import redis

        assert redis_for_blocks is not None
        results = []
        for job in jobs:
            with redis.Redis.from_url(redis_for_blocks) as client:
                client.flushall()
            results.append(run(job))
        return results

    on_redis = [job for job in jobs if DOCS_REDIS in job[0].code]
    alone = [job for job in jobs if job not in on_redis]
    if redis_for_blocks is None:
        on_redis = []  # skipped: see redis_for_blocks
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        serial = pool.submit(run_on_redis, on_redis) if on_redis else None
        results = dict(zip(alone, pool.map(run, alone), strict=True))
        if serial is not None:
            results |= dict(zip(on_redis, serial.result(), strict=True))
    return {(block.name, backend): result for (block, backend), result in results.items()}


def block_env() -> dict[str, str]:
    """The environment a reader's shell would give the block: no test-suite variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "COV_"))}
    env.pop("PYTHONPATH", None)  # rooms comes from the virtualenv, as for a user
    return env


RUN_CASES = [
    pytest.param(block, backend, id=f"{block.name}-{backend or 'pytest'}")
    for block in RUNS
    for backend in (BACKENDS if block.mode == "run" else ("",))
]


@pytest.mark.parametrize(("block", "backend"), RUN_CASES)
def test_python_block_runs(
    block: Block,
    backend: str,
    runs: dict[tuple[str, str], subprocess.CompletedProcess[str]],
) -> None:
    if (block.name, backend) not in runs:
        pytest.skip("redis-server is not installed (make test installs it)")
    result = runs[(block.name, backend)]
    assert result.returncode == 0, (
        f"{block.name} failed on {backend or 'pytest'} ({result.returncode}):\n"
        f"{result.stdout}\n{result.stderr}{numbered(block)}"
    )
    assert "Traceback" not in result.stderr, result.stderr


@pytest.mark.parametrize("block", SCRIPTS, ids=ids(SCRIPTS))
def test_javascript_block_parses(block: Block, tmp_path: Path) -> None:
    node = shutil.which("node")
    if node is None:
        if os.environ.get("CI"):
            pytest.fail("node is not installed (make test installs it)")
        pytest.skip("node is not installed")
    module = re.search(r"^\s*(import|export)\s", block.code, re.MULTILINE) is not None
    script = tmp_path / ("block.mjs" if module else "block.js")
    script.write_text(block.code)
    result = run_process([node, "--check", str(script)], timeout=60)
    assert result.returncode == 0, f"{block.name}:\n{result.stderr}{numbered(block)}"


def numbered(block: Block) -> str:
    lines = block.code.splitlines()
    return "\n\n" + "\n".join(f"{n:4} | {line}" for n, line in enumerate(lines, 1))

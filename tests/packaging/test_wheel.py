"""The package as users get it: ``python -m build`` makes a wheel and an sdist that
``twine check`` accepts; the wheel installs into a clean virtualenv (rooms and its runtime
dependencies, nothing of this checkout) where an app runs and ``mypy --strict`` type-checks
user code against it, through the wheel's ``py.typed``.

Building and installing fetch setuptools, anyio and starlette from the package index, as a
user's pip would.
"""

from __future__ import annotations

import sys
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from email.parser import Parser
from pathlib import Path

import pytest

import rooms
from tests.conftest import ROOT, run_process

USER_APP = """\
import anyio

import rooms
from rooms.testing import TestClient

server = rooms.Server()


@server.on("add")
def add(socket: rooms.Socket, a: int, b: int) -> int:
    return a + b


async def main() -> None:
    async with TestClient(rooms.RoomsMiddleware(None, server=server)) as client:
        await client.connect()
        assert await client.call("add", 2, 3) == 5
    print(rooms.__file__)


anyio.run(main)
"""

# Wrong on purpose: the type checker must see rooms' types, not Any.
USER_MISTAKE = """\
import rooms

server = rooms.Server(ping_interval="25")
"""


@dataclass
class Built:
    wheel: Path
    sdist: Path


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    dist = tmp_path_factory.mktemp("dist")
    result = run_process([sys.executable, "-m", "build", "--outdir", str(dist), str(ROOT)], 600)
    assert result.returncode == 0, result.stdout + result.stderr
    wheels, sdists = list(dist.glob("*.whl")), list(dist.glob("*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1, list(dist.iterdir())
    return Built(wheels[0], sdists[0])


@pytest.fixture(scope="module")
def venv(built: Built, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A clean virtualenv with the wheel installed: its python."""
    home = tmp_path_factory.mktemp("venv")
    result = run_process([sys.executable, "-m", "venv", "--without-pip", str(home)], 120)
    assert result.returncode == 0, result.stderr
    python = home / "bin" / "python"
    # This environment's pip installs into the new one (no pip of its own to bootstrap).
    install = [sys.executable, "-m", "pip", "--python", str(python), "install", "-q"]
    result = run_process([*install, "--disable-pip-version-check", str(built.wheel)], 600)
    assert result.returncode == 0, result.stdout + result.stderr
    yield python


def test_twine_accepts_the_wheel_and_the_sdist(built: Built) -> None:
    command = [
        sys.executable,
        "-m",
        "twine",
        "check",
        "--strict",
        str(built.wheel),
        str(built.sdist),
    ]
    result = run_process(command, 120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_wheel_holds_the_package_typed_and_versioned(built: Built) -> None:
    assert built.wheel.name == f"rooms-{rooms.__version__}-py3-none-any.whl"
    with zipfile.ZipFile(built.wheel) as wheel:
        names = wheel.namelist()
        info = f"rooms-{rooms.__version__}.dist-info"
        metadata = Parser().parsestr(wheel.read(f"{info}/METADATA").decode())
    assert "rooms/py.typed" in names
    assert "rooms/protocol/socketio.py" in names
    assert f"{info}/licenses/LICENSE" in names
    tops = {name.split("/", 1)[0] for name in names}
    assert tops == {"rooms", info}  # no tests, examples, benchmarks or docs
    assert metadata["Version"] == rooms.__version__
    assert metadata["License-Expression"] == "MIT"
    requires = metadata.get_all("Requires-Dist") or []
    assert [r for r in requires if "extra ==" not in r] == ["anyio>=4.4", "starlette>=0.37"]
    assert {"redis", "demo", "dev", "bench"} <= set(metadata.get_all("Provides-Extra") or [])


def test_the_sdist_builds_the_same_package(built: Built) -> None:
    with tarfile.open(built.sdist) as sdist:
        names = {name.split("/", 1)[-1] for name in sdist.getnames()}
    assert {"pyproject.toml", "README.md", "LICENSE", "rooms/py.typed"} <= names


def test_an_app_runs_from_the_installed_wheel(venv: Path, tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(USER_APP)
    # -I: no PYTHONPATH, no user site, not even the script's folder beyond itself.
    result = run_process([str(venv), "-I", "app.py"], 120, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    installed = Path(result.stdout.strip())
    assert installed.is_relative_to(venv.parent.parent), installed  # not this checkout


def test_mypy_checks_user_code_against_the_installed_wheel(venv: Path, tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(USER_APP)
    (tmp_path / "mistake.py").write_text(USER_MISTAKE)
    (tmp_path / "mypy.ini").write_text("[mypy]\nstrict = True\n")
    mypy = [sys.executable, "-m", "mypy", "--config-file", "mypy.ini"]
    mypy += ["--python-executable", str(venv), "--cache-dir", str(tmp_path / ".mypy_cache")]
    good = run_process([*mypy, "app.py"], 300, cwd=tmp_path)
    assert good.returncode == 0, good.stdout + good.stderr
    bad = run_process([*mypy, "mistake.py"], 300, cwd=tmp_path)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert 'Argument "ping_interval" to "Server" has incompatible type "str"' in bad.stdout


def test_mypy_finds_the_checkout_from_user_code_beside_it(tmp_path: Path) -> None:
    """`make` installs this checkout in editable mode into .venv: user code in another folder,
    checked with that environment, sees rooms' types (a path entry, not an import hook)."""
    (tmp_path / "mistake.py").write_text(USER_MISTAKE)
    (tmp_path / "mypy.ini").write_text("[mypy]\nstrict = True\n")
    mypy = [sys.executable, "-m", "mypy", "--config-file", "mypy.ini"]
    mypy += ["--python-executable", sys.executable, "--cache-dir", str(tmp_path / ".cache")]
    result = run_process([*mypy, "mistake.py"], 300, cwd=tmp_path)
    assert 'Argument "ping_interval" to "Server" has incompatible type "str"' in result.stdout, (
        result.stdout + result.stderr
    )


def test_the_changelog_has_a_section_for_this_version() -> None:
    changelog = (ROOT / "CHANGELOG.md").read_text()
    headings = [line for line in changelog.splitlines() if line.startswith("## ")]
    assert headings, "expected version sections (## X.Y.Z) in CHANGELOG.md"
    assert headings[0].split()[1] == rooms.__version__, headings[0]

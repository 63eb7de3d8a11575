"""docker-compose.yml, Dockerfile and .dockerignore.

``docker-compose config`` (Debian's ``docker-compose`` package gives it
without a Docker engine; ``docker compose`` is the plugin's spelling) must
accept the file; the tests skip, saying so, when neither command exists. The
Dockerfile and .dockerignore are checked as text: no engine is needed.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
SERVICES = {"postgres", "pki", "server", "demo"}
VOLUMES = {"postgres-data", "pki"}
INSTALL_HINT = "apt-get install docker-compose (Debian), or the Docker Compose plugin"


def compose_command() -> list[str] | None:
    """``docker-compose``, else ``docker compose`` when the plugin answers; else None."""
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker"):
        probe = subprocess.run(
            ["docker", "compose", "version"], capture_output=True, text=True, check=False
        )
        if probe.returncode == 0:
            return ["docker", "compose"]
    return None


def compose(*arguments: str) -> subprocess.CompletedProcess[str]:
    command = compose_command()
    if command is None:
        pytest.skip(f"neither docker-compose nor docker compose is installed: {INSTALL_HINT}")
    return subprocess.run(
        [*command, "--file", str(COMPOSE_FILE), *arguments],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def normalized() -> str:
    """``config``: the file as Compose reads it, merged and normalized."""
    result = compose("config")
    assert result.returncode == 0, result.stderr
    return "\n" + result.stdout


def test_compose_config_accepts_the_file() -> None:
    result = compose("config", "--quiet")
    assert result.returncode == 0, result.stderr
    assert "ERROR" not in result.stderr


def test_compose_services_and_volumes(normalized: str) -> None:
    assert set(_service_blocks(normalized)) == SERVICES
    volumes = normalized.split("\nvolumes:\n", 1)[1]
    names = {
        line.split(":", 1)[0].strip()
        for line in volumes.splitlines()
        if line.startswith("  ") and not line.startswith("   ")
    }
    assert names == VOLUMES


def _service_blocks(text: str) -> dict[str, str]:
    """The normalized ``config`` output cut into one text block per service."""
    services = text.split("\nservices:\n", 1)[1] if "\nservices:\n" in text else text
    services = services.split("\nvolumes:\n", 1)[0]
    blocks: dict[str, str] = {}
    name = ""
    for line in services.splitlines():
        if line.startswith("  ") and not line.startswith("   ") and line.rstrip().endswith(":"):
            name = line.strip().rstrip(":")
            blocks[name] = ""
        elif name:
            blocks[name] += line + "\n"
    return blocks


def test_compose_wiring(normalized: str) -> None:
    """The parts the issue asks for, in the normalized configuration."""
    blocks = _service_blocks(normalized)
    assert set(blocks) == SERVICES
    postgres = blocks["postgres"]
    assert "image: postgres:15" in postgres
    assert "pg_isready" in postgres
    assert "postgres-data:/var/lib/postgresql/data" in postgres
    pki = blocks["pki"]
    assert "settlement dev-pki --out /pki" in pki
    server = blocks["server"]
    for expected in (
        "dockerfile: Dockerfile",
        "- serve",
        "- --dev-pki",
        "- 0.0.0.0:50051",
        "postgresql+psycopg://",
        "condition: service_healthy",
        "condition: service_completed_successfully",
        "pki:/pki:ro",
        "healthcheck:",
    ):
        assert expected in server, expected
    demo = blocks["demo"]
    assert "- demo" in demo
    assert "network_mode: service:server" in demo
    assert "condition: service_healthy" in demo


def test_dockerfile_installs_the_project_for_a_non_root_user() -> None:
    lines = [
        line.strip()
        for line in (ROOT / "Dockerfile").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    froms = [line for line in lines if line.startswith("FROM ")]
    assert froms
    assert all(line.split()[1] == "python:3.11-slim" for line in froms)
    text = "\n".join(lines)
    assert "[dev]" not in text, "the image installs the project without the dev extra"
    assert "pip install" in text
    (user,) = [line for line in lines if line.startswith("USER ")]
    assert user.split()[1].split(":")[0] not in ("root", "0")
    assert lines[[line.split()[0] for line in lines].index("ENTRYPOINT")] == (
        'ENTRYPOINT ["settlement"]'
    )
    # The last USER comes after every RUN: nothing runs as root afterwards.
    last_run = max(position for position, line in enumerate(lines) if line.startswith("RUN "))
    assert lines.index(user) > last_run


def test_dockerignore_keeps_the_context_to_the_package() -> None:
    rules = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert rules[0] == "*", "ignore everything, then let the package's sources in"
    allowed = {rule[1:].rstrip("/") for rule in rules if rule.startswith("!")}
    assert allowed == {"pyproject.toml", "README.md", "ledger", "settlement", "clients"}
    copied = {
        source.rstrip("/")
        for line in (ROOT / "Dockerfile").read_text().splitlines()
        if line.startswith("COPY ") and "--from=" not in line
        for source in line.split()[1:-1]
    }
    assert copied <= allowed, f"the Dockerfile copies {copied - allowed}, which is ignored"

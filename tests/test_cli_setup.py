"""What a newcomer meets first: `make demo`, the example's config, a busy port, piped
output, how fast commands start, and what `make test` needs."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO
from tests.test_cli import gigcx

PYTHON = sys.executable
GIGCX = str(Path(sys.executable).parent / "gigcx")


def run(*command: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`command` with its output piped, as a script or `| less` would run it."""
    return subprocess.run(
        command,
        cwd=REPO,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_make_demo_keeps_its_data_out_of_the_example_and_takes_a_port():
    plan = run("make", "--dry-run", "demo", "PORT=8099").stdout
    commands = [line for line in plan.splitlines() if "bin/gigcx" in line]
    assert [c.split("bin/gigcx ")[1].split()[0] for c in commands] == [
        "knowledge",
        "experts",
        "serve",
    ]
    data = REPO / ".gigcx" / "kestrel"
    for command in commands:
        assert f'GIGCX_INDEX__PATH="{data}/index"' in command
        assert f'GIGCX_STORE__URL="sqlite:///{data}/gigcx.db"' in command
    assert "--port 8099" in commands[-1]
    ignored = run("git", "check-ignore", "-q", ".gigcx/kestrel/gigcx.db")
    assert ignored.returncode == 0, ".gigcx/ must stay out of git"


def test_the_examples_point_at_readme_sections_that_exist():
    headings = set(re.findall(r"^#+ (.+)$", (REPO / "README.md").read_text(), re.MULTILINE))
    for config in sorted((REPO / "examples").glob("*/gigcx.yaml")):
        pointers = re.findall(r'README "([^"]+)"', config.read_text())
        assert pointers, config
        for section in pointers:
            assert section in headings, f"{config}: no README section {section!r}"


def test_a_busy_port_is_named_before_the_app_or_the_model_loads(synced_brand: Path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        config = str(synced_brand / "gigcx.yaml")
        result = run(GIGCX, "serve", "--config", config, "--port", str(port))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr  # one line, even piped (not wrapped at 80 columns)
    assert f"port {port} on 127.0.0.1 is already in use" in lines[0]
    assert "Pick another with --port" in lines[0] and "make demo PORT=" in lines[0]
    assert "application startup" not in result.stderr + result.stdout


def test_piped_output_keeps_each_message_whole_and_ask_speaks_of_the_terminal(
    synced_brand: Path,
):
    result = gigcx(
        "ask",
        "--config",
        str(synced_brand / "gigcx.yaml"),
        "-m",
        "how long does the X2 battery last?",
        "-m",
        "can I talk to a person?",
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    # A CliRunner's output is no terminal, like a pipe: nothing is cut at 80 columns.
    assert any(
        line.startswith("The X2 plays for up to 40 hours") and line.endswith("USB-C cable.")
        for line in lines
    ), result.output
    assert "I'm passing our conversation to a Kestrel Audio product expert, so you won't" in (
        result.output
    )
    assert "keep this window open" not in result.output
    assert "Here in the terminal nobody takes over" in result.output


def test_commands_that_embed_nothing_do_not_load_the_index_or_the_bot(brand_dir: Path):
    """What made every command take 9-11 s: chromadb, langchain and the bot loaded up front."""
    heavy = ["chromadb", "torch", "sentence_transformers", "langchain_openai", "gigcx.app"]
    check = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from gigcx.cli import app\n"
        "result = CliRunner().invoke(app, sys.argv[1:])\n"
        "assert result.exit_code == 0, result.output\n"
        f"print([m for m in {heavy!r} if m in sys.modules])\n"
    )
    config = str(brand_dir / "gigcx.yaml")
    for command in (
        ["--help"],
        ["experts", "sync", "--config", config],
        ["ledger", "export", "--month", "2026-11", "--config", config],
        ["db", "upgrade", "--config", config],
    ):
        result = run(PYTHON, "-c", check, *command)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip().splitlines()[-1] == "[]", (command, result.stdout)


def test_make_test_says_which_service_is_missing_and_how_to_start_it():
    missing = run(
        PYTHON,
        "-m",
        "tests.helpers.check_services",
        env={"GIGCX_TEST_REDIS_URL": "redis://127.0.0.1:1/0"},
    )
    assert missing.returncode == 1
    assert "Redis at redis://127.0.0.1:1/0 (GIGCX_TEST_REDIS_URL): cannot connect" in (
        missing.stderr
    )
    assert "redis-server" in missing.stderr and "PostgreSQL at" not in missing.stderr
    present = run(PYTHON, "-m", "tests.helpers.check_services")
    assert present.returncode == 0, present.stderr
    assert ": ok" in present.stdout


def test_the_test_databases_follow_gigcx_test_postgres_url():
    shown = run(
        PYTHON,
        "-c",
        "from tests.helpers.processes import POSTGRES_ADMIN_URL; print(POSTGRES_ADMIN_URL)",
        env={"GIGCX_TEST_POSTGRES_URL": "postgresql+asyncpg://ci:pw@db.internal:6543/gigcx"},
    )
    assert shown.stdout.strip() == "postgresql://ci:pw@db.internal:6543/gigcx"
    missing = run(
        PYTHON,
        "-m",
        "tests.helpers.check_services",
        env={"GIGCX_TEST_POSTGRES_URL": "postgresql://postgres@127.0.0.1:1/test"},
    )
    assert missing.returncode == 1
    assert "PostgreSQL at postgresql://postgres@127.0.0.1:1/test (GIGCX_TEST_POSTGRES_URL)" in (
        missing.stderr
    )
    assert "postgresql" in missing.stderr and "Redis at" not in missing.stderr

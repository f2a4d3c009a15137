"""A real Rasa 3.6 server and action server for the Rasa tests, started the way `make rasa`
starts them: the example assistant (examples/rasa/helpdesk, from RasaHQ's Apache-2.0
helpdesk-assistant) trained once and served on loopback from Rasa's own Python 3.10 venv
(`make rasa-venv`; never gigcx's)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.helpers.processes import free_port

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "rasa" / "helpdesk"
# Trained models are kept here: `rasa train` skips training when nothing changed.
MODELS = REPO / ".gigcx" / "rasa" / "models"
DEFAULT_VENV = Path.home() / ".cache" / "gigcx" / "rasa-3.6.21"
READY_SECONDS = 300
# No telemetry (this machine has no internet) and less noise in the logs.
RASA_ENV = {
    "RASA_TELEMETRY_ENABLED": "false",
    "SQLALCHEMY_SILENCE_UBER_WARNING": "1",
    "TF_CPP_MIN_LOG_LEVEL": "2",
    "PYTHONWARNINGS": "ignore",
    "SANIC_HOST": "127.0.0.1",  # the action server's address (rasa-sdk reads it)
}


def rasa_venv() -> Path:
    venv = Path(os.environ.get("GIGCX_RASA_VENV") or DEFAULT_VENV)
    if not (venv / "bin" / "rasa").exists():
        raise RuntimeError(
            f"Rasa is not installed in {venv}: run `make rasa-venv` (Rasa 3.6 in its own "
            "Python 3.10 venv; GIGCX_RASA_VENV names another one)"
        )
    return venv


def _env() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("VIRTUAL_ENV")}
    return {**env, **RASA_ENV}


def train(project: Path, log: Path) -> Path:
    """`rasa train` of `project` into MODELS (a no-op when the project did not change)."""
    MODELS.mkdir(parents=True, exist_ok=True)
    command = [
        str(rasa_venv() / "bin" / "rasa"),
        "train",
        "--config", "config.yml",
        "--domain", "domain",
        "--data", "data",
        "--out", str(MODELS),
        "--fixed-model-name", "helpdesk",
    ]  # fmt: skip
    with log.open("ab") as out:
        done = subprocess.run(
            command, cwd=project, env=_env(), stdout=out, stderr=subprocess.STDOUT, check=False
        )
    model = MODELS / "helpdesk.tar.gz"
    if done.returncode != 0 or not model.exists():
        raise RuntimeError(f"rasa train failed:\n{log.read_text(errors='replace')[-4000:]}")
    return model


@dataclass
class RasaServers:
    """`rasa run --enable-api` and `rasa run actions` of a copy of the example project."""

    project: Path
    log: Path
    port: int = field(default_factory=free_port)
    actions_port: int = field(default_factory=free_port)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, model: Path) -> RasaServers:
        rasa = str(rasa_venv() / "bin" / "rasa")
        (self.project / "endpoints.yml").write_text(
            f'action_endpoint:\n  url: "http://127.0.0.1:{self.actions_port}/webhook"\n'
        )
        actions = [rasa, "run", "actions", "--actions", "actions", "-p", str(self.actions_port)]
        self._spawn("actions", actions)
        server = [rasa, "run", "--enable-api", "-i", "127.0.0.1", "-p", str(self.port)]
        files = ["--endpoints", "endpoints.yml", "--credentials", "credentials.yml"]
        self._spawn("rasa", [*server, "-m", str(model), *files])
        return self

    def _spawn(self, name: str, command: list[str]) -> None:
        with self.log.open("ab") as out:
            self.processes[name] = subprocess.Popen(
                command,
                cwd=self.project,
                env=_env(),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_ready(self, timeout: float = READY_SECONDS) -> None:
        """Until Rasa has its model loaded and the action server answers."""
        deadline = time.monotonic() + timeout
        checks = {
            "rasa": f"{self.url}/status",
            "actions": f"http://127.0.0.1:{self.actions_port}/health",
        }
        while checks:
            for name, url in list(checks.items()):
                process = self.processes[name]
                if process.poll() is not None:
                    raise RuntimeError(f"{name} exited:\n{self.output()}")
                with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as answer:
                    if answer.status == 200:
                        del checks[name]
            if checks and time.monotonic() > deadline:
                waiting = ", ".join(checks)
                raise RuntimeError(f"{waiting} not ready in {timeout} s:\n{self.output()}")
            time.sleep(0.5)

    def stop(self, name: str | None = None) -> None:
        for key, process in list(self.processes.items()):
            if name not in (None, key) or process.poll() is not None:
                continue
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-6000:] if self.log.exists() else ""


@contextlib.contextmanager
def rasa_servers(workdir: Path) -> Iterator[RasaServers]:
    """The example assistant trained (once) and served, stopped afterwards."""
    project = Path(shutil.copytree(EXAMPLE, workdir / "helpdesk"))
    log = workdir / "rasa.log"
    model = train(project, log)
    servers = RasaServers(project, log).start(model)
    try:
        servers.wait_ready()
        yield servers
    finally:
        servers.stop()

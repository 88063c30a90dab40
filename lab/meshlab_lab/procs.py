"""Start, find and stop the lab's daemons. Each daemon has `.lab/run/<name>.pid` and `.lab/logs/<name>.log`."""
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from meshlab_lab import paths

_started: dict = {}


def pid_file(name: str) -> Path:
    return paths.run_dir() / f"{name}.pid"


def log_file(name: str) -> Path:
    return paths.logs_dir() / f"{name}.log"


def start(name: str, argv: Sequence[str], env: dict | None = None, cwd: Path | None = None) -> int:
    """Start ``argv`` detached (own session), log to its log file, record its pid; return the pid."""
    paths.run_dir().mkdir(parents=True, exist_ok=True)
    paths.logs_dir().mkdir(parents=True, exist_ok=True)
    full_env = dict(os.environ)
    full_env.update(env or {})
    with open(log_file(name), "ab") as log:
        proc = subprocess.Popen(list(argv), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=full_env, cwd=str(cwd) if cwd else None, start_new_session=True)
    pid_file(name).write_text(f"{proc.pid}\n{Path(argv[0]).name}\n")
    _started[name] = proc
    return proc.pid


def _recorded(name: str) -> tuple[int, str] | None:
    try:
        lines = pid_file(name).read_text().split("\n")
        return int(lines[0]), lines[1] if len(lines) > 1 else ""
    except (OSError, ValueError):
        return None


def _is_ours(pid: int, program: str) -> bool:
    """True if ``pid`` is alive and still runs ``program`` (guards against pid reuse after a crash)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    if stat.rsplit(")", 1)[1].split()[0] == "Z":
        return False
    return any(Path(arg.decode(errors="replace")).name == program for arg in cmdline[:2]) or not program


def running_pid(name: str) -> int | None:
    proc = _started.get(name)
    if proc is not None and _recorded(name) and _recorded(name)[0] == proc.pid:
        return proc.pid if proc.poll() is None else None
    rec = _recorded(name)
    if rec and _is_ours(*rec):
        return rec[0]
    return None


def stop_pid(pid: int, grace: float = 10.0) -> None:
    """SIGTERM the process group of ``pid``, wait up to ``grace`` seconds, then SIGKILL it."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        except PermissionError:
            os.kill(pid, sig)
        deadline = time.monotonic() + (grace if sig == signal.SIGTERM else 5)
        while time.monotonic() < deadline:
            if not _alive(pid):
                return
            time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def stop(name: str, grace: float = 10.0) -> None:
    pid = running_pid(name)
    if pid:
        stop_pid(pid, grace)
    pid_file(name).unlink(missing_ok=True)


def recorded_names() -> list[str]:
    if not paths.run_dir().is_dir():
        return []
    return sorted(p.stem for p in paths.run_dir().glob("*.pid"))

"""Container stdout/stderr -> a log file in the CRI format the kubelet API serves.

Each line becomes `<RFC3339Nano UTC> <stdout|stderr> F <text>`; a chunk without a trailing newline that
fills the read buffer is written as a partial record (`P`).
"""
import datetime
import threading
from pathlib import Path

CHUNK = 16 * 1024


def _stamp() -> bytes:
    now = datetime.datetime.now(datetime.timezone.utc)
    return (now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond:06d}000Z").encode()


def _pump(stream, tag: bytes, out, lock: threading.Lock) -> None:
    pending = b""
    while True:
        chunk = stream.read1(CHUNK) if hasattr(stream, "read1") else stream.read(CHUNK)
        if not chunk:
            break
        pending += chunk
        *lines, pending = pending.split(b"\n")
        records = [_stamp() + b" " + tag + b" F " + line + b"\n" for line in lines]
        if len(pending) >= CHUNK:
            records.append(_stamp() + b" " + tag + b" P " + pending + b"\n")
            pending = b""
        if records:
            with lock:
                out.write(b"".join(records))
                out.flush()
    if pending:
        with lock:
            out.write(_stamp() + b" " + tag + b" F " + pending + b"\n")
            out.flush()
    stream.close()


def pump_to_cri_log(stdout, stderr, path: Path) -> list[threading.Thread]:
    """Start threads copying the ``stdout``/``stderr`` pipes of a container into ``path`` (appending)."""
    out = open(path, "ab")  # noqa: SIM115 - closed by the last pump thread
    lock = threading.Lock()
    threads = [threading.Thread(target=_pump, args=(stdout, b"stdout", out, lock), daemon=True),
               threading.Thread(target=_pump, args=(stderr, b"stderr", out, lock), daemon=True)]
    for t in threads:
        t.start()

    def close_when_done():
        for t in threads:
            t.join()
        out.close()
    threading.Thread(target=close_when_done, daemon=True).start()
    return threads

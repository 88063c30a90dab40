"""The status a kubelet writes on the error stream when an exec ends (remotecommand protocol v4+).

Shapes and texts are those of a kubelet in front of containerd: metav1.Status serialised by Go, so
the key order is metadata, status, message, reason, details, code.
"""
from __future__ import annotations

import json


def success() -> dict:
    return {"metadata": {}, "status": "Success"}


def nonzero_exit(argv: list[str], code: int) -> dict:
    return {
        "metadata": {},
        "status": "Failure",
        "message": f"command terminated with non-zero exit code: "
                   f"error executing command [{' '.join(argv)}], exit code {code}",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
    }


def internal_error(text: str) -> dict:
    cause = f"error executing command in container: {text}"
    return {
        "metadata": {},
        "status": "Failure",
        "message": f"Internal error occurred: {cause}",
        "reason": "InternalError",
        "details": {"causes": [{"message": cause}]},
        "code": 500,
    }


def encode(status: dict) -> bytes:
    return json.dumps(status, separators=(",", ":")).encode()


def exit_code_of(status: dict) -> int | None:
    """The exit code a status reports (0 for Success), None when it is not an exit status."""
    if status.get("status") == "Success":
        return 0
    for cause in status.get("details", {}).get("causes", []):
        if cause.get("reason") == "ExitCode":
            return int(cause["message"])
    return None


def legacy_error_text(status: dict) -> bytes:
    """Protocols before v4 carry only an error text on the error channel, nothing on success."""
    return b"" if status.get("status") == "Success" else status.get("message", "").encode()

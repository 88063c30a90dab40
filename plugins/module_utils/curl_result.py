# -*- coding: utf-8 -*-
# Copyright: meshlab.mtls contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Classify curl results and run N probes in one shell command.

Probe line format (one per request, printed by the script from ``probe_shell_command``)::

    MESHLAB <curl exit code> <http_code>

``http_code`` is curl's ``%{http_code}`` (``000`` when no HTTP response arrived).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re
import shlex

PROBE_MARKER = "MESHLAB"
_PROBE_LINE = re.compile(r"^%s (\d+) (\d{3})$" % PROBE_MARKER)

# Plain-language meaning of the curl exit codes a mesh probe can run into (curl(1) EXIT CODES).
CURL_EXIT_MEANINGS = {
    0: "HTTP response received",
    1: "unsupported protocol in the URL",
    3: "malformed URL",
    5: "could not resolve the proxy",
    6: "could not resolve the host name",
    7: "connection refused (nothing accepted the connection)",
    16: "HTTP/2 framing error",
    18: "transfer closed with data missing (partial reply)",
    22: "HTTP error status (curl --fail)",
    23: "could not write the response locally",
    26: "could not read local data",
    27: "out of memory",
    28: "timed out",
    35: "TLS handshake failed",
    47: "too many redirects",
    52: "empty reply from server (connection closed without a response)",
    53: "TLS engine not found",
    55: "failed sending data (connection broken while sending)",
    56: "connection reset by peer (failure receiving data)",
    58: "problem with the local client certificate",
    59: "could not use the requested TLS cipher",
    60: "server certificate not trusted (peer verification failed)",
    77: "problem reading the CA certificate file",
    90: "pinned public key did not match",
    92: "HTTP/2 stream error (stream reset)",
    95: "HTTP/3 error",
    97: "proxy handshake failed",
}


class CurlResultError(ValueError):
    """Raised for input that is not a curl exit code / status or a probe line."""


def _exit_code(exit_code):
    try:
        code = int(exit_code)
    except (TypeError, ValueError):
        raise CurlResultError("curl exit code must be an integer, got %r" % (exit_code,)) from None
    if code < 0 or code > 255:
        raise CurlResultError("curl exit code must be between 0 and 255, got %r" % (exit_code,))
    return code


def _status(http_code_text):
    text = "" if http_code_text is None else str(http_code_text).strip()
    if text in ("", "000"):
        return None
    if not re.match(r"^\d{3}$", text):
        raise CurlResultError("http code must be three digits as curl's %%{http_code} prints it, got %r" % text)
    return int(text)


def classify_curl(exit_code, http_code_text, stderr=""):
    """``{result, status, curl_exit, meaning}``; success means an HTTP status in 200-399."""
    code = _exit_code(exit_code)
    status = _status(http_code_text)
    if code == 0 and status is not None:
        meaning = "HTTP %d" % status
        if status >= 400:
            meaning += " (server or proxy answered with an error)"
    else:
        meaning = CURL_EXIT_MEANINGS.get(code, "curl failed with exit code %d" % code)
        if code == 0:
            meaning = "curl exited 0 without an HTTP status"
        elif status is not None:
            meaning += " after HTTP %d" % status
    detail = (stderr or "").strip().splitlines()
    if detail:
        meaning += " [%s]" % detail[-1].strip()
    ok = code == 0 and status is not None and 200 <= status <= 399
    return {"result": "success" if ok else "failure", "status": status, "curl_exit": code, "meaning": meaning}


def probe_shell_command(url, count, timeout_s, extra_args=()):
    """A POSIX ``sh -c`` script that runs ``count`` curls and prints one probe line per request."""
    if not isinstance(url, str) or "://" not in url:
        raise CurlResultError("url must be an absolute URL such as http://details.bookinfo:9080/details/0")
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise CurlResultError("count must be a positive integer, got %r" % (count,))
    try:
        timeout = float(timeout_s)
    except (TypeError, ValueError):
        raise CurlResultError("timeout_s must be a number of seconds, got %r" % (timeout_s,)) from None
    if timeout <= 0:
        raise CurlResultError("timeout_s must be positive, got %r" % (timeout_s,))
    if isinstance(extra_args, str):
        raise CurlResultError("extra_args must be a list of separate arguments, not one string")
    args = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "%g" % timeout]
    args += [str(arg) for arg in extra_args] + [url]
    curl = " ".join(shlex.quote(arg) for arg in args)
    # `code=$(curl ...)` keeps curl's own exit status in $?; curl prints 000 when no response came.
    return ("i=0; while [ \"$i\" -lt %d ]; do i=$((i+1)); code=$(%s); rc=$?; "
            "printf '%s %%s %%s\\n' \"$rc\" \"${code:-000}\"; done" % (count, curl, PROBE_MARKER))


def parse_probe_output(text):
    """Parse probe lines into classified results; other lines (shell noise) are ignored."""
    if not isinstance(text, str):
        raise CurlResultError("probe output must be text")
    results = []
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith(PROBE_MARKER + " "):
            continue
        match = _PROBE_LINE.match(line)
        if not match:
            raise CurlResultError("malformed probe line %r (expected '%s <exit> <http_code>')" % (line, PROBE_MARKER))
        results.append(classify_curl(match.group(1), match.group(2)))
    return results

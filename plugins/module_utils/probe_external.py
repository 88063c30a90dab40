# -*- coding: utf-8 -*-
# Copyright: meshlab.mtls contributors
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)
"""Send HTTP(S) requests from the controller the way ``curl --connect-to`` would.

The URL's host stays the TLS SNI name, the name checked against the certificate and the Host
header; only the TCP connection goes to the address chosen by the ``connect_to`` rules. Python
errors are mapped to the curl exit code curl would have given, so that results from the
controller and from pods share one vocabulary (see curl_result.classify_curl).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import socket
import ssl

try:
    from http.client import HTTPConnection, HTTPException, RemoteDisconnected
    from urllib.parse import urlsplit
except ImportError:  # Python 2 is not supported; keeps ansible-test's py2 import check quiet
    HTTPConnection = HTTPException = RemoteDisconnected = urlsplit = None

# curl exit codes (curl/include/curl/curl.h, CURLcode)
CURL_COULDNT_RESOLVE_HOST = 6
CURL_COULDNT_CONNECT = 7
CURL_WEIRD_SERVER_REPLY = 8
CURL_OPERATION_TIMEDOUT = 28
CURL_SSL_CONNECT_ERROR = 35
CURL_GOT_NOTHING = 52
CURL_SEND_ERROR = 55
CURL_RECV_ERROR = 56
CURL_PEER_FAILED_VERIFICATION = 60


class ConnectToError(ValueError):
    """A connect_to entry is not HOST1:PORT1:HOST2:PORT2."""


def _split_host_port_pairs(text):
    """Split 'h1:p1:h2:p2' where a host may be a bracketed IPv6 literal."""
    parts, i = [], 0
    while len(parts) < 3:
        if text[i:i + 1] == "[":
            end = text.find("]", i)
            if end < 0 or text[end + 1:end + 2] != ":":
                raise ConnectToError("unclosed IPv6 bracket in %r" % text)
            parts.append(text[i + 1:end])
            i = end + 2
        else:
            end = text.find(":", i)
            if end < 0:
                raise ConnectToError("%r is not HOST1:PORT1:HOST2:PORT2" % text)
            parts.append(text[i:end])
            i = end + 1
    last = text[i:]
    if last.startswith("["):
        raise ConnectToError("%r is not HOST1:PORT1:HOST2:PORT2" % text)
    parts.append(last)
    return parts


def _port(text, entry):
    if text == "":
        return None
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ConnectToError("bad port %r in connect_to %r" % (text, entry))
    return int(text)


def parse_connect_to(entry):
    """Parse one curl ``--connect-to`` value into (host1, port1, host2, port2).

    An empty host1/port1 matches any host/port; an empty host2/port2 keeps the original one.
    Empty parts come back as None.
    """
    if not isinstance(entry, str) or not entry:
        raise ConnectToError("connect_to entries must be non-empty strings, got %r" % (entry,))
    h1, p1, h2, p2 = _split_host_port_pairs(entry)
    return (h1 or None, _port(p1, entry), h2 or None, _port(p2, entry))


def resolve_connect_to(rules, host, port):
    """Where to connect for host:port: the first matching rule wins, like curl."""
    for h1, p1, h2, p2 in rules:
        if (h1 is None or h1.lower() == host.lower()) and (p1 is None or p1 == port):
            return (h2 or host, p2 or port)
    return host, port


def parse_url(url):
    """(scheme, host, port, path_with_query) of an http/https URL, or ValueError."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("only http:// and https:// URLs with a host are supported, got %r" % url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return parts.scheme, parts.hostname, port, path


def tls_context(ca_file=None, validate_certs=True):
    ctx = ssl.create_default_context(cafile=ca_file) if validate_certs else ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if not validate_certs:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _host_header(host, port, scheme):
    default = 443 if scheme == "https" else 80
    name = "[%s]" % host if ":" in host else host
    return name if port == default else "%s:%d" % (name, port)


def _error(exit_code, detail):
    return {"curl_exit": exit_code, "http_code": "000", "error": detail}


def request_once(url, connect_to_rules=(), timeout_s=5.0, ca_file=None, validate_certs=True, ctx=None):
    """One GET; returns {curl_exit, http_code (3-digit text, '000' when none), error}."""
    scheme, host, port, path = parse_url(url)
    addr_host, addr_port = resolve_connect_to(connect_to_rules, host, port)
    try:
        sock = socket.create_connection((addr_host, addr_port), timeout=timeout_s)
    except socket.gaierror as exc:
        return _error(CURL_COULDNT_RESOLVE_HOST, "could not resolve %s: %s" % (addr_host, exc))
    except socket.timeout:
        return _error(CURL_OPERATION_TIMEDOUT, "connect to %s:%s timed out" % (addr_host, addr_port))
    except OSError as exc:
        return _error(CURL_COULDNT_CONNECT, "connect to %s:%s failed: %s" % (addr_host, addr_port, exc))
    try:
        if scheme == "https":
            ctx = ctx or tls_context(ca_file, validate_certs)
            try:
                sock = ctx.wrap_socket(sock, server_hostname=host)
            except ssl.SSLCertVerificationError as exc:
                return _error(CURL_PEER_FAILED_VERIFICATION, "certificate not accepted: %s" % exc.verify_message)
            except socket.timeout:
                return _error(CURL_OPERATION_TIMEDOUT, "TLS handshake timed out")
            except (ssl.SSLError, OSError) as exc:
                return _error(CURL_SSL_CONNECT_ERROR, "TLS handshake failed: %s" % exc)
        return _exchange(sock, host, port, scheme, path, timeout_s)
    finally:
        sock.close()


def _exchange(sock, host, port, scheme, path, timeout_s):
    conn = HTTPConnection(host, port, timeout=timeout_s)
    conn.sock = sock  # already connected (and wrapped in TLS): HTTPConnection only does HTTP on it
    try:
        conn.putrequest("GET", path, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", _host_header(host, port, scheme))
        conn.putheader("User-Agent", "meshlab-mtls-probe")
        conn.putheader("Accept", "*/*")
        conn.endheaders()
    except socket.timeout:
        return _error(CURL_OPERATION_TIMEDOUT, "sending the request timed out")
    except OSError as exc:
        return _error(CURL_SEND_ERROR, "sending the request failed: %s" % exc)
    try:
        resp = conn.getresponse()
        resp.read()
    except RemoteDisconnected:
        return _error(CURL_GOT_NOTHING, "empty reply from server")
    except socket.timeout:
        return _error(CURL_OPERATION_TIMEDOUT, "no response within %ss" % timeout_s)
    except ConnectionResetError:
        return _error(CURL_RECV_ERROR, "connection reset by peer")
    except ssl.SSLError as exc:
        return _error(CURL_RECV_ERROR, "TLS error while reading: %s" % exc)
    except HTTPException as exc:
        return _error(CURL_WEIRD_SERVER_REPLY, "malformed response: %r" % exc)
    except OSError as exc:
        return _error(CURL_RECV_ERROR, "receiving failed: %s" % exc)
    return {"curl_exit": 0, "http_code": "%03d" % resp.status, "error": ""}

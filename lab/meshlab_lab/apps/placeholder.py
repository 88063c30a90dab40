"""PLACEHOLDER for control-plane images (istiod, Kiali, Prometheus, operators): it only answers readiness.

It does none of the real component's work. In the lab, istiod's behaviour lives in the host addon
``python -m meshlab_lab.mesh``; the operators are emulated by ``meshlab_lab.operators``.
``--http PORT:PATH`` answers 200 on PATH (404 elsewhere); ``--tcp PORT`` just accepts connections.
"""
import argparse
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def http_server(port: int, path: str) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server naming
            ok = self.path.split("?", 1)[0] == path
            body = b"ok\n" if ok else b"not found (lab placeholder)\n"
            self.send_response(200 if ok else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, fmt, *args):
            pass
    return ThreadingHTTPServer(("0.0.0.0", port), Handler)


def tcp_acceptor(port: int) -> None:
    with socket.create_server(("0.0.0.0", port), reuse_port=False) as server:
        while True:
            conn, _ = server.accept()
            conn.close()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="placeholder")
    parser.add_argument("--http", action="append", default=[], metavar="PORT:PATH")
    parser.add_argument("--tcp", action="append", default=[], type=int, metavar="PORT")
    # The pod spec's own args (e.g. istiod's `discovery --monitoringAddr=...`) follow ours: the
    # placeholder does not interpret them.
    args, _image_args = parser.parse_known_args(argv)
    if not args.http and not args.tcp:
        parser.error("give at least one --http PORT:PATH or --tcp PORT")
    threads = []
    for spec in args.http:
        port, _, path = spec.partition(":")
        if not port.isdigit() or not path.startswith("/"):
            parser.error(f"--http wants PORT:/path, not {spec!r}")
        threads.append(threading.Thread(target=http_server(int(port), path).serve_forever, daemon=True))
    threads += [threading.Thread(target=tcp_acceptor, args=(port,), daemon=True) for port in args.tcp]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The four bookinfo services on port 9080, answering with the same routes and JSON shapes as upstream bookinfo.

``python -m meshlab_lab.apps.bookinfo productpage|details|reviews|ratings [--version v1]``. Calls between
services are plain HTTP/1.1 to ``http://<service>:9080`` so that they go through the pod's sidecar.
"""
import argparse
import html
import http.client
import json
import os
import socket
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from meshlab_lab.apps.dns import resolve

PORT = 9080
TITLE = "The Comedy of Errors"
SUMMARY = ('<a href="https://en.wikipedia.org/wiki/The_Comedy_of_Errors">Wikipedia Summary</a>: The Comedy of '
           "Errors is one of <b>William Shakespeare's</b> early plays. It is his shortest and one of his most "
           "farcical comedies, with a major part of the humour coming from slapstick and mistaken identity, in "
           "addition to puns and word play.")
REVIEWS = [("Reviewer1", "An extremely entertaining play by Shakespeare. The slapstick humour is refreshing!"),
           ("Reviewer2", "Absolutely fun and entertaining. The play lacks thematic depth when compared to other "
                         "plays by Shakespeare.")]
RATINGS = {"Reviewer1": 5, "Reviewer2": 4}
STAR_COLOR = {"v2": "black", "v3": "red"}
TIMEOUT = 3.0


def call(service: str, path: str) -> tuple[int, dict | None]:
    """GET http://<service>:9080<path>; (status, json) or (0, None) when the call failed at the network level.

    Like upstream, ``<SERVICE>_HOSTNAME`` and ``<SERVICE>_SERVICE_PORT`` override the target.
    """
    host = os.environ.get(f"{service.upper()}_HOSTNAME", service)
    port = int(os.environ.get(f"{service.upper()}_SERVICE_PORT", PORT))
    try:
        conn = http.client.HTTPConnection(resolve(host), port, timeout=TIMEOUT)
        conn.request("GET", path, headers={"Host": f"{host}:{port}", "Connection": "close"})
        answer = conn.getresponse()
        body = answer.read()
        conn.close()
    except (OSError, http.client.HTTPException):
        return 0, None
    try:
        return answer.status, json.loads(body) if answer.status == 200 else None
    except ValueError:
        return answer.status, None


def details(_version, path):
    if path == "/health":
        return 200, {"status": "Details is healthy"}
    if path.startswith("/details/"):
        ident = path.rsplit("/", 1)[1]
        if not ident.isdigit():
            return 400, {"error": "please provide numeric product id"}
        return 200, {"id": int(ident), "author": "William Shakespeare", "year": 1595, "type": "paperback",
                     "pages": 200, "publisher": "PublisherA", "language": "English", "ISBN-10": "1234567890",
                     "ISBN-13": "123-1234567890"}
    return 404, None


def ratings(_version, path):
    if path == "/health":
        return 200, {"status": "Ratings is healthy"}
    if path.startswith("/ratings/"):
        ident = path.rsplit("/", 1)[1]
        if not ident.isdigit():
            return 400, {"error": "please provide numeric product ID"}
        return 200, {"id": int(ident), "ratings": RATINGS}
    return 404, None


def reviews(version, path):
    if path == "/health":
        return 200, {"status": "Reviews is healthy"}
    if not path.startswith("/reviews/"):
        return 404, None
    ident = path.rsplit("/", 1)[1]
    entries = [{"reviewer": who, "text": text} for who, text in REVIEWS]
    if version in STAR_COLOR:
        status, body = call("ratings", f"/ratings/{ident}")
        for entry in entries:
            if status == 200 and body:
                entry["rating"] = {"stars": body["ratings"].get(entry["reviewer"], 0), "color": STAR_COLOR[version]}
            else:
                entry["rating"] = {"error": "Ratings service is currently unavailable"}
    return 200, {"id": ident, "podname": os.environ.get("MESHLAB_POD_NAME", socket.gethostname()),
                 "clustername": "null", "reviews": entries}


def product_page() -> str:
    d_status, d_body = call("details", "/details/0")
    r_status, r_body = call("reviews", "/reviews/0")
    parts = [f"<html><head><title>Simple Bookstore App</title></head><body><h3>{TITLE}</h3><p>{SUMMARY}</p>"]
    if d_status == 200 and d_body:
        rows = "".join(f"<dt>{html.escape(k)}:</dt><dd>{html.escape(str(v))}</dd>" for k, v in d_body.items())
        parts.append(f'<div id="details"><h4>Book Details</h4><dl>{rows}</dl></div>')
    else:
        parts.append('<div id="details"><h4 class="text-center text-primary">Error fetching product details!</h4>'
                     "<p>Sorry, product details are currently unavailable for this book.</p></div>")
    if r_status == 200 and r_body:
        items = []
        for review in r_body["reviews"]:
            rating = review.get("rating", {})
            stars = (f'<font color="{rating["color"]}">' + "&#9733;" * rating["stars"] + "</font>"
                     if "stars" in rating else html.escape(rating.get("error", "")))
            items.append(f"<blockquote><p>{html.escape(review['text'])}</p>"
                         f"<small>{review['reviewer']}</small>{stars}</blockquote>")
        parts.append(f'<div id="reviews"><h4>Book Reviews</h4>{"".join(items)}</div>')
    else:
        parts.append('<div id="reviews"><h4 class="text-center text-primary">Error fetching product reviews!</h4>'
                     "<p>Sorry, product reviews are currently unavailable for this book.</p></div>")
    return "".join(parts) + "</body></html>"


def productpage(_version, path):
    if path == "/health":
        return 200, "Product page is healthy"
    if path == "/api/v1/products":
        return 200, [{"id": 0, "title": TITLE, "descriptionHtml": SUMMARY}]
    if path == "/api/v1/products/0":
        return call("details", "/details/0")
    if path in ("/productpage", "/"):
        return 200, ("html", product_page())
    if path.startswith("/static/"):
        return 200, ("css", "body { font-family: sans-serif; }\n")
    return 404, None


APPS = {"productpage": productpage, "details": details, "reviews": reviews, "ratings": ratings}
CONTENT = {"html": "text/html; charset=utf-8", "css": "text/css"}


def make_handler(app: str, version: str):
    serve = APPS[app]

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = app

        def do_GET(self):  # noqa: N802 - http.server naming
            status, body = serve(version, self.path.split("?", 1)[0])
            content_type = "application/json"
            if isinstance(body, tuple):
                content_type, body = CONTENT[body[0]], body[1]
            elif body is None:
                body, content_type = "Not Found", "text/plain"
            elif isinstance(body, str):
                content_type = "text/plain"
            else:
                body = json.dumps(body)
            data = body.encode() if isinstance(body, str) else body
            self.send_response(status or 503)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(data)
            self.close_connection = True

        def log_message(self, fmt, *args):
            pass

    return Handler


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="bookinfo")
    parser.add_argument("app", choices=sorted(APPS))
    parser.add_argument("--version", default=os.environ.get("SERVICE_VERSION", "v1"))
    parser.add_argument("--port", type=int, default=PORT)
    parser.add_argument("--bind", default="0.0.0.0")
    args = parser.parse_args(argv)
    server = ThreadingHTTPServer((args.bind, args.port), make_handler(args.app, args.version))
    server.daemon_threads = True
    server.serve_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

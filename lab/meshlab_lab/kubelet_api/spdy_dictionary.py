"""The zlib preset dictionary of SPDY/3 header blocks (SPDY Protocol Draft 3, section 2.6.10.1).

The spec lists it as a byte table. It is built here from its two parts: a run of words, each
preceded by its length as a 32-bit big-endian integer, then a plain tail of common values.
"""

_WORDS = (
    "options head post put delete trace accept accept-charset accept-encoding accept-language "
    "accept-ranges age allow authorization cache-control connection content-base content-encoding "
    "content-language content-length content-location content-md5 content-range content-type date etag "
    "expect expires from host if-match if-modified-since if-none-match if-range if-unmodified-since "
    "last-modified location max-forwards pragma proxy-authenticate proxy-authorization range referer "
    "retry-after server te trailer transfer-encoding upgrade user-agent vary via warning www-authenticate "
    "method get status 200 OK version HTTP/1.1 url public set-cookie keep-alive origin"
).split(" ")
# "200 OK" is one entry in the spec's table; the split above cut it in two.
_WORDS[_WORDS.index("200") : _WORDS.index("200") + 2] = ["200 OK"]

_TAIL = (
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
    "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized"
    "403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service Unavailable"
    "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT"
    "chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,"
    "text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0."
)


def _build() -> bytes:
    out = bytearray()
    for word in _WORDS:
        raw = word.encode("ascii")
        out += len(raw).to_bytes(4, "big") + raw
    return bytes(out) + _TAIL.encode("ascii")


SPDY3_DICTIONARY = _build()

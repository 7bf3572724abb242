"""The download response (RFC 8620 §6.2) for immutable blobs: streamed in chunks from a file, with
byte ranges (RFC 9110 §14: one range answers 206 with Content-Range, an unsatisfiable one 416; a
request for several ranges gets the whole blob, which §14.2 allows), a strong ETag (the blob id:
the bytes of an id never change) with If-None-Match -> 304 and If-Range, and long-lived caching.

A body part of a large message has no size until it is decoded (`app.blob.parts`): a plain
download of one not yet measured is sent without Content-Length (chunked), and remembers its size
as it ends; a Range request measures it first (one more decoding pass), then is answered as for any
blob.  Seeking into a part decodes from its start: a range costs the decoding of what precedes it."""

from __future__ import annotations

import re
from typing import BinaryIO

from starlette.concurrency import run_in_threadpool
from starlette.responses import Response, StreamingResponse

CHUNK = 256 * 1024
CACHE = "private, immutable, max-age=31536000"
_RANGE = re.compile(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", re.ASCII)  # RFC 9110 §14.1: DIGIT is ASCII


def etag_of(blob_id: str) -> str:
    return f'"{blob_id}"'


def parse_range(header: str, size: int) -> tuple[int, int] | None | bool:
    """(first, last) octet of a single satisfiable range; None when the header is to be ignored
    (malformed, several ranges, another unit); False when it is unsatisfiable."""
    m = _RANGE.fullmatch(header)
    if m is None:
        return None
    first, last = m.group(1), m.group(2)
    if not first and not last:
        return None
    if not first:  # a suffix: the last n octets
        n = int(last)
        if n == 0 or size == 0:
            return False
        return max(0, size - n), size - 1
    start = int(first)
    end = int(last) if last else size - 1
    if last and end < start:
        return None  # RFC 9110 §14.1.1: invalid, ignored
    if start >= size:
        return False
    return start, min(end, size - 1)


def _matches(header: str, etag: str) -> bool:
    tags = [t.strip() for t in header.split(",")]
    # If-None-Match uses the weak comparison (RFC 9110 §13.1.2)
    return "*" in tags or etag in tags or ("W/" + etag) in tags


async def blob_response(request, blob_id: str, f: BinaryIO, size: int | None, headers: dict) -> Response:
    """The response for a download of `f` (which it closes), `size` octets; headers: the
    Content-Type and Content-Disposition to send with the bytes.  ``size`` None: not known yet,
    ``f.size()`` measures it (a part, `app.blob.parts.PartFile`)."""
    etag = etag_of(blob_id)
    common = {"ETag": etag, "Cache-Control": CACHE, "Accept-Ranges": "bytes"}
    inm = request.headers.get("if-none-match")
    if inm is not None and _matches(inm, etag):
        f.close()
        return Response(status_code=304, headers=common)
    start, end, status = 0, (size or 0) - 1, 200
    extra = {}
    range_header = request.headers.get("range")
    if_range = request.headers.get("if-range")
    if range_header is not None and (if_range is None or if_range.strip() == etag):
        if size is None:
            try:
                size = await run_in_threadpool(f.size)  # type: ignore[attr-defined]
            except BaseException:
                f.close()
                raise
            end = size - 1
        wanted = parse_range(range_header, size)
        if wanted is False:
            f.close()
            return Response(status_code=416, headers={**common, "Content-Range": f"bytes */{size}"})
        if wanted is not None:
            start, end = wanted
            status = 206
            extra["Content-Range"] = f"bytes {start}-{end}/{size}"
    if size is None:  # a part not yet measured, sent whole until its decoder ends (the server
        length = -1  # frames it: chunked for HTTP/1.1, to the connection's close for 1.0)
    else:
        length = end - start + 1 if size else 0
        extra["Content-Length"] = str(length)

    async def body():
        try:
            if start:
                await run_in_threadpool(f.seek, start)
            left = length
            while left > 0 or left < 0:
                chunk = await run_in_threadpool(f.read, min(CHUNK, left) if left > 0 else CHUNK)
                if not chunk:
                    break
                if left > 0:
                    left -= len(chunk)
                yield chunk
        finally:
            f.close()

    return StreamingResponse(body(), status_code=status,
                             headers={**headers, **common, **extra})

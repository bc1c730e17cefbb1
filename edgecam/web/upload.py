"""Reading an upload: the content type, the body (bounded by Content-Length and
max_upload_bytes) and the first file of a multipart/form-data body.

The multipart parser is a linear scan with ``bytes.find``: it stops at the
first file part and gives up after MAX_PARTS parts. The standard library's
email parser took 37.7 s of CPU (holding the GIL, so the camera slowed down)
on a 7.5 MB body of 150,000 tiny parts; this answers the same body in
milliseconds. Part headers are parsed with the email package, but only
MAX_PART_HEADER bytes of them per part.
"""

from __future__ import annotations

import re
from email.message import Message
from email.parser import HeaderParser
from email.policy import HTTP as HTTP_POLICY
from io import BufferedIOBase
from typing import BinaryIO, Optional, Union

from edgecam.web.errors import HttpError

MAX_PARTS = 16  # form fields scanned for a file before giving up
MAX_PART_HEADER = 8192  # bytes of headers per part
FILE_FIELDS = ("image", "file")  # a part with one of these names counts as a file even without a filename
_BOUNDARY_CHARS = re.compile(r"[0-9A-Za-z'()+_,\-./:=? ]{1,70}")  # RFC 2046 bchars (fullmatch)
_HOW = "Content-Type: image/jpeg (or another image/* type) with the file as the body, or a multipart/form-data form"


def upload_kind(content_type: Optional[str]) -> str:
    """"image" or "multipart"; HttpError 415 for anything else."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media.startswith("image/") and len(media) > len("image/"):
        return "image"
    if media == "multipart/form-data":
        return "multipart"
    shown = f"{content_type!r}" if content_type else "no Content-Type"
    raise HttpError(415, f"POST /classify needs {_HOW}; got {shown}")


def read_body(rfile: Union[BinaryIO, BufferedIOBase], raw_length: Optional[str], limit: int) -> bytes:
    """Content-Length bytes from ``rfile``, checked against ``limit`` before
    reading anything. 411/400/413 as HttpError; the caller closes the connection."""
    if raw_length is None:
        raise HttpError(411, "Content-Length required (chunked uploads are not supported)")
    try:
        length = int(raw_length)
        if length < 0:
            raise ValueError
    except ValueError:
        raise HttpError(400, f"bad Content-Length: {raw_length[:40]!r}") from None
    if length > limit:
        raise HttpError(413, f"upload of {length} bytes is larger than max_upload_bytes ({limit})")
    if length == 0:
        raise HttpError(400, "empty body: send an image file as the request body or a form upload")
    body = rfile.read(length)
    if len(body) < length:
        raise HttpError(400, f"the body ended after {len(body)} of {length} bytes")
    return body


def boundary_of(content_type: str) -> bytes:
    message = Message()
    message["Content-Type"] = content_type
    boundary = message.get_param("boundary")
    if not isinstance(boundary, str) or not _BOUNDARY_CHARS.fullmatch(boundary) or boundary.endswith(" "):
        raise HttpError(400, "multipart/form-data needs a boundary of 1 to 70 characters (RFC 2046)")
    return boundary.encode("ascii")


def multipart_file(content_type: str, body: bytes, max_parts: int = MAX_PARTS) -> bytes:
    """The content of the first file part (a filename, or a field named image/file)."""
    delimiter = b"--" + boundary_of(content_type)
    if body.startswith(delimiter):
        pos = len(delimiter)
    else:  # a preamble before the first delimiter
        found = body.find(b"\r\n" + delimiter)
        if found < 0:
            raise HttpError(400, "multipart body with no part: the boundary never appears")
        pos = found + 2 + len(delimiter)
    for _ in range(max_parts):
        if body.startswith(b"--", pos):  # the closing delimiter
            break
        line_end = body.find(b"\r\n", pos, pos + 256)  # allows transport padding after the delimiter
        if line_end < 0:
            raise HttpError(400, "multipart body: no line break after a boundary")
        headers, content_start = _part_headers(body, line_end + 2)
        content_end = body.find(b"\r\n" + delimiter, content_start)
        if content_end < 0:
            raise HttpError(400, "multipart body: unterminated part (no closing boundary)")
        if _is_file(headers) and content_end > content_start:
            return body[content_start:content_end]
        pos = content_end + 2 + len(delimiter)
    else:
        raise HttpError(400, f"multipart upload without a file in its first {max_parts} parts")
    raise HttpError(400, "multipart upload without a non-empty file field")


def _part_headers(body: bytes, start: int) -> tuple[Message, int]:
    if body.startswith(b"\r\n", start):  # a part without headers
        return Message(), start + 2
    end = body.find(b"\r\n\r\n", start, start + MAX_PART_HEADER + 4)
    if end < 0:
        raise HttpError(400, f"multipart body: a part's header is longer than {MAX_PART_HEADER} bytes or never ends")
    text = body[start:end].decode("latin-1")
    return HeaderParser(policy=HTTP_POLICY).parsestr(text + "\r\n\r\n"), end + 4


def _is_file(headers: Message) -> bool:
    name = headers.get_param("name", header="content-disposition")
    return bool(headers.get_filename()) or name in FILE_FIELDS

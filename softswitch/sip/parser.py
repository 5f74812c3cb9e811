"""Reading SIP messages from bytes: framing (datagram and stream), the start line, header
lines, and the checks of RFC 3261 §8.2 / RFC 4475 that decide between 400, 505 and dropping.

Reading is in two steps so that the hot path stays cheap:
- `parse_datagram` / `StreamFramer` split headers and frame the body. Anything that cannot
  even be read as a SIP start line raises `Unparseable` (the datagram is dropped).
  Defects found while reading (a bad request line, two Content-Length values ...) are kept
  on the message, because a 400 needs the message's Via, From, To, Call-ID and CSeq.
- `check_request` / `check_response` validate what routing needs and raise `BadMessage`
  with the status to answer (requests) or to drop (responses).
"""

from __future__ import annotations

from dataclasses import dataclass

from . import abnf
from .headers import HeaderError, parse_int
from .message import HeaderList, Request, Response
from .uri import AbsoluteUri, UriError

MAX_HEADER_BYTES = 16384  # a header section larger than this is refused on streams
MAX_MAX_FORWARDS = 255
MAX_CONTENT_LENGTH_DIGITS = 9


class Unparseable(ValueError):
    """Not a SIP message at all: drop it, no response can be formed."""


class BadMessage(ValueError):
    """A SIP message that breaks the grammar or a rule: answer `status` (requests only)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(slots=True)
class Parsed:
    message: Request | Response
    defect: BadMessage | None  # the first grammar defect found while reading
    datagram_digest: bytes | None = None  # set by the endpoint for a UDP datagram


def parse_datagram(data: bytes) -> Parsed:
    """One message from a UDP datagram. Octets after Content-Length are ignored (RFC 4475
    §3.1.1.8); a Content-Length larger than the datagram is a 400 (§3.1.2.2)."""
    end, sep = _header_end(data)
    if end < 0:
        head, body = data, b""
    else:
        head, body = data[:end], data[end + sep:]
    parsed = _parse_head(head)
    length, defect = _content_length(parsed.message.headers)
    parsed.defect = parsed.defect or defect
    if length is not None and defect is None:
        if length > len(body):
            parsed.defect = BadMessage(400, "Content-Length larger than the message")
        else:
            body = body[:length]
    parsed.message.body = body
    return parsed


def _header_end(data: bytes) -> tuple[int, int]:
    end = data.find(b"\r\n\r\n")
    if end >= 0:
        return end, 4
    end = data.find(b"\n\n")  # bare LF line ends, from lax peers
    return end, 2


def _parse_head(head: bytes) -> Parsed:
    start, headers, defect = _split_head(head)
    return _with_start_line(start, headers, defect)


def _split_head(head: bytes) -> tuple[str, HeaderList, BadMessage | None]:
    """The start line and the unfolded header lines, with the first defect found."""
    text = head.decode("utf-8", "surrogateescape")
    lines = text.split("\r\n") if "\r\n" in text else text.split("\n")
    while lines and not lines[0]:  # RFC 3261 §7.5: ignore CRLFs before the start line
        lines.pop(0)
    if not lines:
        raise Unparseable("empty message")
    defect: BadMessage | None = None
    headers: HeaderList = []
    known = _HEADER_KEYS
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        key = known.get(name) if colon else None
        if key is None:  # not a usual spelling: a folded line, odd spacing or case, garbage
            if line[:1] in (" ", "\t"):
                if headers:
                    key, value = headers[-1]
                    headers[-1] = (key, f"{value} {line.strip(abnf.LWS)}")
                elif defect is None:
                    defect = BadMessage(400, "continuation line before any header")
                continue
            key = _header_key(name) if colon else ""
            if not key:
                if defect is None:
                    defect = BadMessage(400, f"malformed header line {line[:40]!r}")
                continue
        headers.append((key, value.strip(abnf.LWS)))
    return lines[0], headers, defect


def _with_start_line(start: str, headers: HeaderList, defect: BadMessage | None) -> Parsed:
    message: Request | Response
    if start.startswith("SIP/"):
        status_match = abnf.STATUS_LINE.fullmatch(start)
        if not status_match:
            raise Unparseable("malformed status line")
        version, status, reason = status_match.groups()
        message = Response(headers=headers, status=int(status), reason=reason or "",
                           version=version)
        return Parsed(message, defect)

    request_match = abnf.REQUEST_LINE.fullmatch(start)
    if request_match:
        method, uri, version = request_match.groups()
    else:
        # Readable enough to answer 400 (extra spaces, LWS inside the Request-URI ...)?
        parts = start.split()
        if len(parts) < 3 or not parts[-1].startswith("SIP/") \
                or not abnf.TOKEN.fullmatch(parts[0]):
            raise Unparseable("malformed start line")
        method, uri, version = parts[0], parts[1], parts[-1]
        defect = BadMessage(400, "malformed Request-Line")
    return Parsed(Request(headers=headers, method=method, uri=uri, version=version), defect)


# Header names as the common phones spell them -> lower-case long keys: one dict lookup
# instead of a regex for almost every header line.
_HEADER_KEYS: dict[str, str] = {
    spelling: abnf.COMPACT_FORMS.get(key, key)
    for key, name in [*abnf.CANONICAL_NAMES.items(), *((c, c) for c in abnf.COMPACT_FORMS)]
    for spelling in (name, key, name.upper(), key.upper())
}


def _header_key(name: str) -> str:
    """The key of a header name (HCOLON allows whitespace before ":"), or "" if invalid."""
    stripped = name.rstrip(abnf.LWS)
    if not abnf.TOKEN.fullmatch(stripped):
        return ""
    key = stripped.lower()
    return abnf.COMPACT_FORMS.get(key, key)


def _content_length(headers: HeaderList) -> tuple[int | None, BadMessage | None]:
    values = [value for key, value in headers if key == "content-length"]
    if not values:
        return None, None
    if len(values) > 1:
        return None, BadMessage(400, "multiple Content-Length values")
    text = values[0]
    if not abnf.is_number(text, MAX_CONTENT_LENGTH_DIGITS):
        return None, BadMessage(400, "bad Content-Length")
    return int(text), None


class StreamFramer:
    """Cuts a TCP byte stream into messages by Content-Length (RFC 3261 §18.3).

    `feed` returns complete messages; `FramingError` means the stream cannot be resynchronised
    (the connection should be answered if possible and closed). Messages complete before a
    bad one are returned first; the next `feed` (of b"" if need be) raises.

    A peer may trickle a message a byte at a time, so each byte is looked at a bounded number
    of times: the search for the end of the headers resumes where the last one stopped, and a
    framed head is kept (`_head`) until its body is complete instead of being parsed again.
    """

    def __init__(self, max_message_size: int = 65535) -> None:
        self.max_message_size = max_message_size
        self._buffer = bytearray()
        self._scanned = 0  # bytes of the buffer searched for the end of the headers in vain
        # The framed head of the message whose body is awaited: (body start, total, parsed).
        self._head: tuple[int, int, Parsed | None] | None = None

    def feed(self, data: bytes) -> list[Parsed]:
        self._buffer += data
        messages: list[Parsed] = []
        try:
            self._frame(messages)
        except (FramingError, Unparseable):
            if not messages:
                raise
            # The messages before the bad one are handed over; the next feed raises.
        return messages

    def _frame(self, messages: list[Parsed]) -> None:
        while True:
            head = self._head or self._read_head()
            if head is None:
                return  # wait for the end of the headers
            body_start, total, parsed = head
            if len(self._buffer) < total:
                self._head = head
                return  # wait for the rest of the body
            if parsed is not None:
                parsed.message.body = bytes(self._buffer[body_start:total])
                messages.append(parsed)
            del self._buffer[:total]
            self._head = None
            self._scanned = 0

    def _read_head(self) -> tuple[int, int, Parsed | None] | None:
        """Frame the next message's head: (body start, total length, parsed or None for a
        broken SIP start line, skipped); None while the end of the headers has not arrived."""
        # Keep-alive CRLFs (RFC 5626 §3.5.1) between messages are skipped.
        strip = 0
        while strip < len(self._buffer) and self._buffer[strip] in b"\r\n":
            strip += 1
        if strip:
            del self._buffer[:strip]
            self._scanned = 0
        end, sep = self._find_header_end()
        if end < 0:
            if len(self._buffer) > MAX_HEADER_BYTES:
                raise FramingError(513, "header section too large")
            return None
        start, headers, head_defect = _split_head(bytes(self._buffer[:end]))
        try:
            parsed: Parsed | None = _with_start_line(start, headers, head_defect)
        except Unparseable:
            if not (start.startswith("SIP/") or " SIP/" in start):
                raise  # not SIP at all: the connection goes
            parsed = None  # a broken SIP start line (RFC 4475 bigcode): skipped, stream kept
        length, defect = _content_length(headers)
        if defect is not None:
            raise FramingError(400, defect.reason, parsed)
        total = end + sep + (length or 0)
        if total > self.max_message_size:
            raise FramingError(513, "message too large", parsed)
        return end + sep, total, parsed

    def _find_header_end(self) -> tuple[int, int]:
        """As `_header_end` over the first MAX_HEADER_BYTES + 4 bytes, searching only what
        was not searched before: 3 bytes back, for a CRLFCRLF split across reads."""
        buffer = self._buffer
        resume = max(self._scanned - 3, 0)
        limit = min(len(buffer), MAX_HEADER_BYTES + 4)
        end = buffer.find(b"\r\n\r\n", resume, limit)
        if end >= 0:
            return end, 4
        end = buffer.find(b"\n\n", resume, limit)  # bare LF line ends, from lax peers
        if end >= 0:
            return end, 2
        self._scanned = limit
        return -1, 0

    @property
    def pending(self) -> int:
        return len(self._buffer)


class FramingError(ValueError):
    def __init__(self, status: int, reason: str, parsed: Parsed | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.parsed = parsed


def check_request(parsed: Parsed) -> Request:
    """Validate a request as RFC 3261 §8.2 and RFC 4475 want; raise BadMessage(status)."""
    request = parsed.message
    assert isinstance(request, Request)
    _check_common(parsed)
    cseq = request.cseq
    assert cseq is not None
    if cseq.method != request.method:
        raise BadMessage(400, "CSeq method does not match the request method")
    try:
        uri = request.request_uri
    except UriError as error:
        raise BadMessage(400, f"bad Request-URI: {error}") from None
    if isinstance(uri, AbsoluteUri):
        raise BadMessage(416, "Unsupported URI Scheme")
    try:
        max_forwards = request.get("max-forwards")
        if max_forwards is not None:
            parse_int(max_forwards, "Max-Forwards", MAX_MAX_FORWARDS)
        request.expires  # noqa: B018 - parse now so that a bad one is a 400
    except HeaderError as error:
        raise BadMessage(400, str(error)) from None
    return request


def check_response(parsed: Parsed) -> Response:
    """Validate a response before it is matched to a transaction; raise BadMessage (drop)."""
    response = parsed.message
    assert isinstance(response, Response)
    _check_common(parsed)
    return response


_REQUIRED_SINGLE = ("from", "to", "call-id", "cseq")


def _check_common(parsed: Parsed) -> None:
    """What requests and responses share: the reader's defects, the version, the headers
    every message needs (§8.1.1), single-value headers given once."""
    if parsed.defect is not None:
        raise parsed.defect
    message = parsed.message
    if message.version != abnf.SIP_VERSION:
        raise BadMessage(505, "Version Not Supported")
    seen: set[str] = set()
    has_via = False
    for key, _ in message.headers:
        if key in abnf.SINGLE_VALUE_HEADERS:
            if key in seen:
                raise BadMessage(400, f"more than one {abnf.canonical_name(key)} header")
            seen.add(key)
        elif key == "via":
            has_via = True
    if not has_via:
        raise BadMessage(400, "missing Via header")
    for key in _REQUIRED_SINGLE:
        if key not in seen:
            raise BadMessage(400, f"missing {abnf.canonical_name(key)} header")
    call_id = message.call_id
    if not call_id or " " in call_id or "\t" in call_id:
        raise BadMessage(400, "bad Call-ID")
    try:
        message.vias  # noqa: B018 - parse now so that a bad one is a 400
        message.from_  # noqa: B018
        message.to  # noqa: B018
        message.cseq  # noqa: B018
    except HeaderError as error:
        raise BadMessage(400, str(error)) from None

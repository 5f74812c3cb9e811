"""SIP requests and responses: headers kept as received, structured views parsed on demand.

Header keys are lower-case long names (compact forms expanded on parse). Values are
kept as written so that a proxy or a response copies them byte for byte; typed readers
(`vias`, `from_`, `cseq` ...) parse once and cache, and so does the splitting of list
headers: the parser, the endpoint and the registrar all read Via and Contact. Change
headers through the methods here, which forget what was cached of the header changed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from . import abnf
from .headers import (
    MAX_EXPIRES,
    CSeq,
    HeaderError,
    NameAddr,
    Via,
    parse_cseq,
    parse_int,
    parse_name_addr,
    parse_via,
)
from .uri import Uri, parse_uri

HeaderList = list[tuple[str, str]]
_T = TypeVar("_T")


@dataclass(slots=True, eq=False)
class Message:
    headers: HeaderList = field(default_factory=list)
    body: bytes = b""
    _cache: dict[str, object] = field(default_factory=dict, repr=False)  # typed views by key
    _elements: dict[str, tuple[str, ...]] = field(default_factory=dict, repr=False)

    # ---- raw access -------------------------------------------------------------------------
    def get(self, key: str) -> str | None:
        """The first value of a header (``key`` lower-case long name), or None."""
        for name, value in self.headers:
            if name == key:
                return value
        return None

    def get_all(self, key: str) -> list[str]:
        """Every line of a header, as written."""
        return [value for name, value in self.headers if name == key]

    def values(self, key: str) -> list[str]:
        """The list elements of a comma-separated header over all its lines."""
        return list(self._list_elements(key))

    def _list_elements(self, key: str) -> tuple[str, ...]:
        """`values`, split once per header and shared (hence a tuple)."""
        elements = self._elements.get(key)
        if elements is None:
            out: list[str] = []
            for name, value in self.headers:
                if name == key:
                    out.extend(abnf.split_list(value))
            elements = self._elements[key] = tuple(out)
        return elements

    def has(self, key: str) -> bool:
        for name, _ in self.headers:  # noqa: SIM110 - a plain loop is twice as fast as any()
            if name == key:
                return True
        return False

    def add(self, key: str, value: str) -> None:
        self.headers.append((key, value))
        self._changed(key)

    def prepend(self, key: str, value: str) -> None:
        self.headers.insert(0, (key, value))
        self._changed(key)

    def set(self, key: str, value: str) -> None:
        """Replace every line of a header by one value (kept at the first one's place)."""
        for i, (name, _) in enumerate(self.headers):
            if name == key:
                self.headers[i] = (key, value)
                self.headers[i + 1:] = [h for h in self.headers[i + 1:] if h[0] != key]
                break
        else:
            self.headers.append((key, value))
        self._changed(key)

    def remove(self, key: str) -> None:
        self.headers = [h for h in self.headers if h[0] != key]
        self._changed(key)

    def replace_line(self, index: int, value: str, *, keep_parsed: bool = False) -> None:
        """Rewrite the value of the header line at `index`. `keep_parsed`: the caller has
        updated the cached typed view to match (the endpoint adding `received` to a Via)."""
        key = self.headers[index][0]
        self.headers[index] = (key, value)
        self._elements.pop(key, None)
        if not keep_parsed:
            self._cache.pop(key, None)

    def _changed(self, key: str) -> None:
        self._cache.pop(key, None)
        self._elements.pop(key, None)

    # ---- typed views (raise HeaderError on a malformed value) ---------------------------------
    @property
    def vias(self) -> list[Via]:
        cached = self._cache.get("via")
        if cached is None:
            elements = self._list_elements("via")
            if "" in elements:
                raise HeaderError("empty Via value")
            cached = [parse_via(v) for v in elements]
            self._cache["via"] = cached
        return cached  # type: ignore[return-value]

    @property
    def top_via(self) -> Via | None:
        vias = self.vias
        return vias[0] if vias else None

    def _single(self, key: str, read: Callable[[str], _T]) -> _T | None:
        """A single-valued header read by `read`, once (None, also cached, when absent)."""
        cache = self._cache
        if key in cache:
            return cache[key]  # type: ignore[return-value]
        value = self.get(key)
        parsed = cache[key] = None if value is None else read(value)
        return parsed

    # The dialog headers are read a hundred times a call (matching, routing, logging): a
    # cached one is one dict lookup here, without a call of `_single`.
    @property
    def from_(self) -> NameAddr | None:
        try:
            return self._cache["from"]  # type: ignore[return-value]
        except KeyError:
            return self._single("from", parse_name_addr)

    @property
    def to(self) -> NameAddr | None:
        try:
            return self._cache["to"]  # type: ignore[return-value]
        except KeyError:
            return self._single("to", parse_name_addr)

    @property
    def call_id(self) -> str | None:
        try:
            return self._cache["call-id"]  # type: ignore[return-value]
        except KeyError:
            return self._single("call-id", str.strip)

    @property
    def cseq(self) -> CSeq | None:
        try:
            return self._cache["cseq"]  # type: ignore[return-value]
        except KeyError:
            return self._single("cseq", parse_cseq)

    @property
    def contacts(self) -> list[NameAddr]:
        """Contact values; a ``*`` Contact is not a name-addr: check `contact_star` first."""
        cached = self._cache.get("contact")
        if cached is None:
            cached = [parse_name_addr(v) for v in self._list_elements("contact")]
            self._cache["contact"] = cached
        return cached  # type: ignore[return-value]

    @property
    def contact_star(self) -> bool:
        return "*" in self._list_elements("contact")

    @property
    def expires(self) -> int | None:
        """The Expires header's delta-seconds (RFC 3261 §20.19), None if absent."""
        return self._single("expires", _read_expires)

    @property
    def content_type(self) -> str | None:
        value = self.get("content-type")
        return None if value is None else value.split(";", 1)[0].strip().lower()

    # ---- writing ------------------------------------------------------------------------------
    def _start_line(self) -> str:
        raise NotImplementedError

    def to_bytes(self) -> bytes:
        names = _WIRE_NAMES
        lines = [self._start_line()]
        lines += [f"{names[key]}: {value}" for key, value in self.headers
                  if key != "content-length"]
        lines.append(f"Content-Length: {len(self.body)}")
        head = "\r\n".join(lines) + "\r\n\r\n"
        return head.encode("utf-8", "surrogateescape") + self.body


class _WireNames(dict[str, str]):
    """Header key -> the name written on the wire (abnf.canonical_name), remembered: one
    dict lookup per header line when serialising."""

    def __missing__(self, key: str) -> str:
        name = abnf.canonical_name(key)
        if len(self) < 1024:  # keys come from peers too: bounded
            self[key] = name
        return name


_WIRE_NAMES = _WireNames()


@dataclass(slots=True, eq=False)
class Request(Message):
    method: str = ""
    uri: str = ""
    version: str = abnf.SIP_VERSION

    @property
    def request_uri(self) -> Uri:
        cached = self._cache.get(":uri")
        if cached is None:
            cached = parse_uri(self.uri)
            self._cache[":uri"] = cached
        return cached  # type: ignore[return-value]

    def _start_line(self) -> str:
        return f"{self.method} {self.uri} {self.version}"


@dataclass(slots=True, eq=False)
class Response(Message):
    status: int = 200
    reason: str = "OK"
    version: str = abnf.SIP_VERSION

    def _start_line(self) -> str:
        return f"{self.version} {self.status} {self.reason}"


REASONS = {
    100: "Trying", 180: "Ringing", 181: "Call Is Being Forwarded", 182: "Queued",
    183: "Session Progress", 200: "OK", 202: "Accepted", 301: "Moved Permanently",
    302: "Moved Temporarily", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
    404: "Not Found", 405: "Method Not Allowed", 406: "Not Acceptable",
    407: "Proxy Authentication Required", 408: "Request Timeout", 410: "Gone",
    413: "Request Entity Too Large", 414: "Request-URI Too Long",
    415: "Unsupported Media Type", 416: "Unsupported URI Scheme", 420: "Bad Extension",
    423: "Interval Too Brief", 433: "Anonymity Disallowed", 480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist", 482: "Loop Detected", 483: "Too Many Hops",
    484: "Address Incomplete", 486: "Busy Here", 487: "Request Terminated",
    488: "Not Acceptable Here", 491: "Request Pending", 500: "Server Internal Error",
    501: "Not Implemented", 503: "Service Unavailable", 504: "Server Time-out",
    505: "Version Not Supported", 513: "Message Too Large", 600: "Busy Everywhere",
    603: "Decline", 604: "Does Not Exist Anywhere",
}

def _lacks_to_tag(request: Request) -> bool:
    try:
        to = request.to
    except HeaderError:
        return False  # a To we cannot read is copied as it is
    return to is not None and to.tag is None


def _read_expires(value: str) -> int:
    return parse_int(value, "Expires", MAX_EXPIRES)


# Headers a response copies from its request (RFC 3261 §8.2.6.2).
_COPIED = frozenset(("via", "from", "to", "call-id", "cseq"))


def make_response(request: Request, status: int, reason: str | None = None,
                  to_tag: str | None = None, headers: HeaderList | None = None,
                  body: bytes = b"") -> Response:
    """A response to `request`: Via, From, To, Call-ID and CSeq copied as written; the To tag
    added when the request's To has none and the response is not a 100."""
    copied: HeaderList = [(k, v) for k, v in request.headers if k in _COPIED]
    if status == 100:
        copied += [(k, v) for k, v in request.headers if k == "timestamp"]
    elif to_tag is not None and _lacks_to_tag(request):
        for i, (key, value) in enumerate(copied):
            if key == "to":
                copied[i] = (key, f"{value};tag={to_tag}")
                break
    if headers:
        copied.extend(headers)
    return Response(headers=copied, body=body, status=status,
                    reason=reason or REASONS.get(status, "Unknown"))


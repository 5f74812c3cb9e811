"""Readers for the structured header values the core needs (RFC 3261 §20, §25)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from . import abnf
from .uri import (
    PLAIN_SIP_URI,
    Params,
    Uri,
    UriError,
    format_params,
    parse_hostport,
    parse_uri,
    plain_params,
    plain_sip_uri,
)


class HeaderError(ValueError):
    """A header value that does not follow its grammar: the request gets 400."""


@dataclass(slots=True)
class NameAddr:
    """From, To, Contact, Route, Record-Route: name-addr or addr-spec, plus header params."""

    uri: Uri
    display_name: str | None = None
    params: Params = field(default_factory=dict)

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    def __str__(self) -> str:
        name = f"{abnf.quote(self.display_name)} " if self.display_name else ""
        return f"{name}<{self.uri}>{format_params(self.params)}"


@dataclass(slots=True)
class Via:
    transport: str  # upper case: UDP, TCP, TLS, SCTP, WS...
    host: str
    port: int | None = None
    params: Params = field(default_factory=dict)
    protocol: str = "SIP/2.0"

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    @property
    def is_rfc3261(self) -> bool:
        """The branch carries the magic cookie (RFC 3261 §8.1.1.7), so it alone names the
        transaction; without it (RFC 2543 peers) §17.2.3's fallback matching applies."""
        branch = self.params.get("branch")
        return branch is not None and branch.startswith("z9hG4bK") and len(branch) > 7

    @property
    def rport(self) -> bool:
        return "rport" in self.params

    @property
    def sent_by(self) -> str:
        return self.host if self.port is None else f"{self.host}:{self.port}"

    def __str__(self) -> str:
        return f"{self.protocol}/{self.transport} {self.sent_by}{format_params(self.params)}"


@dataclass(slots=True, frozen=True)
class CSeq:
    number: int
    method: str

    def __str__(self) -> str:
        return f"{self.number} {self.method}"


MAX_CSEQ = 2**31 - 1  # RFC 3261 §8.1.1.5: the sequence number MUST be less than 2**31
MAX_EXPIRES = 2**32 - 1  # RFC 3261 §20.19: delta-seconds up to 2**32 - 1


def parse_cseq(value: str) -> CSeq:
    number_text, _, method = value.strip().partition(" ")
    method = method.strip()
    if not abnf.is_number(number_text, 10) or not abnf.TOKEN.fullmatch(method):
        raise HeaderError(f"bad CSeq {value!r}")
    number = int(number_text)
    if number > MAX_CSEQ:
        raise HeaderError("CSeq number too large")
    return CSeq(number, method)


def parse_int(value: str, name: str, maximum: int) -> int:
    text = value.strip()
    if abnf.is_number(text, 10):
        number = int(text)
        if number <= maximum:
            return number
    raise HeaderError(f"bad {name} {value!r}")


def parse_params(text: str) -> Params:
    """Header parameters after the value: ``;tag=x ; lr ; q="1"``.

    generic-param = token [ EQUAL gen-value ]; gen-value = token / host / quoted-string.
    """
    params: Params = {}
    pos = 0
    n = len(text)
    while pos < n:
        pos = _skip_lws(text, pos)
        if pos >= n:
            break
        if text[pos] != ";":
            raise HeaderError(f"expected ';' in {text!r}")
        pos = _skip_lws(text, pos + 1)
        match = abnf.TOKEN.match(text, pos)
        if not match:
            raise HeaderError(f"empty parameter in {text!r}")
        name = match.group().lower()
        pos = _skip_lws(text, match.end())
        value: str | None = None
        if pos < n and text[pos] == "=":
            pos = _skip_lws(text, pos + 1)
            if pos < n and text[pos] == '"':
                quoted = abnf.QUOTED_STRING.match(text, pos)
                if not quoted:
                    raise HeaderError(f"unterminated quoted string in {text!r}")
                value = quoted.group()
                pos = quoted.end()
            elif (address := _IPV6_VALUE.match(text, pos)) is not None:
                value = address.group()
                pos = address.end()
            elif pos < n and text[pos] == "[":
                end = text.find("]", pos)
                if end < 0:
                    raise HeaderError(f"bad IPv6 reference in {text!r}")
                value = text[pos:end + 1]
                pos = end + 1
            else:
                token = abnf.TOKEN.match(text, pos)
                if not token:
                    raise HeaderError(f"bad value of parameter {name!r}")
                value = token.group()
                pos = token.end()
        params[name] = value
    return params


def _skip_lws(text: str, pos: int) -> int:
    n = len(text)
    while pos < n and text[pos] in abnf.LWS:
        pos += 1
    return pos


# The shape nearly every phone writes: ["display name" ]<sip:user@host:port;uri-params>;
# header-params, no escapes. Matched by one regex (the URI's host by the grammar's own rules);
# anything else takes the full grammar. A test holds the two paths together.
_PLAIN_NAME_ADDR = re.compile(
    rf'(?:"([^"\\\r\n]*)"[ \t]*)?<{PLAIN_SIP_URI}>'
    r"((?:;[a-zA-Z0-9\-.!*_+`'~]+(?:=[a-zA-Z0-9\-.!*_+`'~]+)?)*)"
)
_PLAIN_VIA = re.compile(
    rf"SIP/2\.0/([A-Z]+) ({abnf.IPV4.pattern}|{abnf.HOSTNAME.pattern})(?::([0-9]{{1,5}}))?"
    r"((?:;[a-zA-Z0-9\-.!*_+`'~]+(?:=[a-zA-Z0-9\-.!*_+`'~]+)?)*)"
)


# received=<IPv6address> is written without brackets (RFC 3261 §18.2.1, §20.42).
_IPV6_VALUE = re.compile(r"[0-9a-fA-F]*:[0-9a-fA-F:.]*")


def parse_name_addr(value: str) -> NameAddr:
    plain = _PLAIN_NAME_ADDR.fullmatch(value)
    if plain is not None:
        display, scheme, user, host, port, uri_params, params = plain.groups()
        uri = plain_sip_uri(scheme, user, host, port, uri_params)
        if uri is not None:
            return NameAddr(uri, display, plain_params(params) if params else {})
    return parse_name_addr_by_grammar(value)


def parse_name_addr_by_grammar(value: str) -> NameAddr:
    text = value.strip()
    if not text:
        raise HeaderError("empty address")
    display: str | None = None
    if text[0] == '"':
        quoted = abnf.QUOTED_STRING.match(text)
        if not quoted:
            raise HeaderError("unterminated quoted display name")
        display = abnf.unquote(quoted.group())
        rest = text[quoted.end():].lstrip(abnf.LWS)
        if not rest.startswith("<"):
            raise HeaderError("display name without <URI>")
        return _bracketed(rest, display)
    angle = text.find("<")
    if angle >= 0:
        words = text[:angle].split()
        if not all(abnf.TOKEN.fullmatch(w) for w in words):
            raise HeaderError(f"display name is not tokens: {text[:angle]!r}")
        return _bracketed(text[angle:], " ".join(words) or None)
    # addr-spec: the URI ends at the first ";" and may hold none of , ? ; (§20)
    uri_text, semi, param_text = text.partition(";")
    uri_text = uri_text.rstrip(abnf.LWS)
    if "?" in uri_text or "," in uri_text:
        raise HeaderError("URI with '?' or ',' must be enclosed in <>")
    return NameAddr(_uri(uri_text), None, parse_params(semi + param_text))


def _bracketed(text: str, display: str | None) -> NameAddr:
    end = text.find(">")
    if end < 0:
        raise HeaderError("'<' without '>'")
    return NameAddr(_uri(text[1:end]), display, parse_params(text[end + 1:]))


def _uri(text: str) -> Uri:
    try:
        return parse_uri(text)
    except UriError as error:
        raise HeaderError(str(error)) from None


def parse_via(value: str) -> Via:
    """One via-parm: ``SIP / 2.0 / UDP host:port;branch=...`` (LWS allowed around "/")."""
    plain = _PLAIN_VIA.fullmatch(value)
    if plain is not None:
        transport, host, port, params = plain.groups()
        if port is None or int(port) <= 65535:
            return Via(transport, host.lower(), None if port is None else int(port),
                       plain_params(params) if params else {})
    return parse_via_by_grammar(value)


def parse_via_by_grammar(value: str) -> Via:
    text = value.strip()
    parts = text.split("/", 2)
    if len(parts) != 3:
        raise HeaderError(f"bad Via {value!r}")
    name, version = parts[0].strip(), parts[1].strip()
    rest = parts[2].lstrip(abnf.LWS)
    transport_end = 0
    while transport_end < len(rest) and rest[transport_end] not in " \t":
        transport_end += 1
    transport = rest[:transport_end]
    if not (abnf.TOKEN.fullmatch(name) and abnf.TOKEN.fullmatch(version)
            and abnf.TOKEN.fullmatch(transport)):
        raise HeaderError(f"bad Via protocol {value!r}")
    rest = rest[transport_end:].lstrip(abnf.LWS)
    semi = rest.find(";")
    sent_by, param_text = (rest, "") if semi < 0 else (rest[:semi], rest[semi:])
    try:
        host, port = parse_hostport(sent_by.strip().replace(" ", ""))
    except UriError as error:
        raise HeaderError(f"bad Via sent-by: {error}") from None
    return Via(transport.upper(), host, port, parse_params(param_text), f"{name}/{version}")

"""SIP, SIPS and tel URIs (RFC 3261 §19.1, RFC 3966), and other absolute URIs kept opaque."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import unquote as percent_decode

from . import abnf


class UriError(ValueError):
    """The text is not a URI of the grammar."""


Params = dict[str, str | None]


@dataclass(slots=True)
class SipUri:
    scheme: str  # "sip" or "sips"
    host: str
    user: str | None = None  # as written (escapes kept), so serialising is exact
    password: str | None = None
    port: int | None = None
    params: Params = field(default_factory=dict)  # names lower-cased
    headers: str | None = None  # the raw "?h=v&h=v" part without "?"

    @property
    def user_text(self) -> str | None:
        """The user part with %-escapes resolved (what a person would type)."""
        return None if self.user is None else percent_decode(self.user)

    @property
    def hostport(self) -> str:
        return self.host if self.port is None else f"{self.host}:{self.port}"

    @property
    def transport(self) -> str | None:
        value = self.params.get("transport")
        return value.lower() if value else None

    def __str__(self) -> str:
        out = [self.scheme, ":"]
        if self.user is not None:
            out.append(self.user)
            if self.password is not None:
                out += [":", self.password]
            out.append("@")
        out.append(self.hostport)
        out.append(format_params(self.params))
        if self.headers is not None:
            out += ["?", self.headers]
        return "".join(out)


@dataclass(slots=True)
class TelUri:
    number: str
    params: Params = field(default_factory=dict)
    scheme: str = "tel"

    def __str__(self) -> str:
        return f"tel:{self.number}{format_params(self.params)}"


@dataclass(slots=True)
class AbsoluteUri:
    """A URI of a scheme we do not interpret (http:, isbn:, soap.beep: ...)."""

    scheme: str
    rest: str

    def __str__(self) -> str:
        return f"{self.scheme}:{self.rest}"


Uri = SipUri | TelUri | AbsoluteUri


def format_params(params: Params) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())


# The shape nearly every phone writes: sip:user@host:port;uri-params, in lower case, with no
# password, escapes or headers. One regex reads it (groups: scheme, user, host, port,
# params); anything else takes the full grammar. The host is the grammar's own IPv4address /
# hostname, so nothing the grammar refuses gets through; a test holds the two paths together.
PLAIN_SIP_URI = (
    r"(sips?):(?:([a-zA-Z0-9\-_.!~*'()&=+$,]+)@)?"
    rf"({abnf.IPV4.pattern}|{abnf.HOSTNAME.pattern})(?::([0-9]{{1,5}}))?"
    r"((?:;[a-zA-Z0-9\-_.!~*'()\[\]/:&+$]+(?:=[a-zA-Z0-9\-_.!~*'()\[\]/:&+$]+)?)*)"
)
_PLAIN_SIP_URI = re.compile(PLAIN_SIP_URI)
_ILLEGAL = re.compile(r'[ \t\r\n<>"]')


def plain_sip_uri(scheme: str, user: str | None, host: str, port: str | None,
                  params: str) -> SipUri | None:
    """The SipUri of a PLAIN_SIP_URI match; None when its port is out of range."""
    if port is None:
        port_number = None
    else:
        port_number = int(port)
        if port_number > 65535:
            return None
    return SipUri(scheme, host.lower(), user, None, port_number,
                  plain_params(params) if params else {})


def plain_params(text: str) -> Params:
    """``;a=1;lr`` as matched by a plain pattern: no escapes, quotes or empty names."""
    params: Params = {}
    for item in text.split(";")[1:]:
        name, eq, value = item.partition("=")
        params[name.lower()] = value if eq else None
    return params


def parse_uri(text: str) -> Uri:
    plain = _PLAIN_SIP_URI.fullmatch(text)
    if plain is not None:
        uri = plain_sip_uri(*plain.groups())
        if uri is not None:
            return uri
    return parse_uri_by_grammar(text)


def parse_uri_by_grammar(text: str) -> Uri:
    colon = text.find(":")
    if colon <= 0 or not abnf.SCHEME.fullmatch(text[:colon]):
        raise UriError(f"no URI scheme in {text!r}")
    scheme = text[:colon].lower()
    rest = text[colon + 1:]
    if _ILLEGAL.search(rest):
        raise UriError(f"illegal character in URI {text!r}")
    if scheme in ("sip", "sips"):
        return _parse_sip(scheme, rest)
    if scheme == "tel":
        number, _, param_text = rest.partition(";")
        if not number:
            raise UriError("tel URI without a number")
        return TelUri(number, parse_uri_params(param_text) if param_text else {})
    if not rest:
        raise UriError(f"empty {scheme} URI")
    return AbsoluteUri(scheme, rest)


def _parse_sip(scheme: str, rest: str) -> SipUri:
    # Neither params nor headers may hold a raw "@", so the last "@" ends the userinfo.
    userinfo, at, hostpart = rest.rpartition("@")
    user = password = None
    if at:
        user, colon, pw = userinfo.partition(":")
        if not user or not abnf.USER.fullmatch(user):
            raise UriError(f"bad user part {user!r}")
        if colon:
            if not abnf.PASSWORD.fullmatch(pw):
                raise UriError("bad password part")
            password = pw
    headers = None
    if "?" in hostpart:
        hostpart, _, headers = hostpart.partition("?")
        if not all(abnf.HCHARS.fullmatch(h) for h in headers.replace("=", "&").split("&")):
            raise UriError(f"bad URI headers {headers!r}")
    hostport, _, param_text = hostpart.partition(";")
    host, port = parse_hostport(hostport)
    params = parse_uri_params(param_text) if param_text else {}
    return SipUri(scheme, host, user, password, port, params, headers)


def parse_hostport(text: str) -> tuple[str, int | None]:
    if text.startswith("["):
        end = text.find("]")
        host, port_text = text[:end + 1], text[end + 1:]
        if end < 0 or not abnf.IPV6_REFERENCE.fullmatch(host):
            raise UriError(f"bad IPv6 reference {text!r}")
        if port_text and not port_text.startswith(":"):
            raise UriError(f"bad host:port {text!r}")
        port_text = port_text[1:]
        sep = bool(port_text)
    else:
        host, sep_char, port_text = text.partition(":")
        sep = bool(sep_char)
        if not (abnf.HOSTNAME.fullmatch(host) or abnf.IPV4.fullmatch(host)):
            raise UriError(f"bad host {host!r}")
    port = None
    if sep:
        if not abnf.PORT.fullmatch(port_text) or int(port_text) > 65535:
            raise UriError(f"bad port {port_text!r}")
        port = int(port_text)
    return host.lower(), port


def parse_uri_params(text: str) -> Params:
    """``a=1;lr;b`` (no leading ";") -> ordered dict with lower-cased names."""
    params: Params = {}
    for item in text.split(";"):
        name, eq, value = item.partition("=")
        if not abnf.PARAMCHARS.fullmatch(name) or (eq and not abnf.PARAMCHARS.fullmatch(value)):
            raise UriError(f"bad URI parameter {item!r}")
        params[name.lower()] = value if eq else None
    return params

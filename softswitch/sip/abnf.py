"""Grammar of RFC 3261 §25, as compiled patterns and character sets.

Names follow the ABNF so that a rule can be checked against the RFC by eye.
Only what the parser and the header readers need is here.
"""

import re

ALPHANUM = "a-zA-Z0-9"
MARK = r"\-_.!~*'()"
UNRESERVED = ALPHANUM + MARK
ESCAPED = r"%[0-9a-fA-F]{2}"

# token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~")
TOKEN_CHARS = ALPHANUM + r"\-.!%*_+`'~"
TOKEN = re.compile(rf"[{TOKEN_CHARS}]+")
# word also admits ( ) < > : \ " / [ ] ? { } (Call-ID)
WORD = re.compile(rf"[{TOKEN_CHARS}()<>:\\\"/\[\]?{{}}]+")

# user = 1*( unreserved / escaped / user-unreserved ); user-unreserved = & = + $ , ; ? /
USER = re.compile(rf"(?:[{UNRESERVED}&=+$,;?/]|{ESCAPED})+")
# password = *( unreserved / escaped / "&" / "=" / "+" / "$" / "," )
PASSWORD = re.compile(rf"(?:[{UNRESERVED}&=+$,]|{ESCAPED})*")
HOSTNAME = re.compile(r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9\-]*[a-zA-Z0-9])?\.)*"
                      r"[a-zA-Z](?:[a-zA-Z0-9\-]*[a-zA-Z0-9])?\.?")
# Digits are ASCII everywhere: \d would also match other scripts' digits, which int() reads.
IPV4 = re.compile(r"[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}")
IPV6_REFERENCE = re.compile(r"\[[0-9a-fA-F:.]+\]")
PORT = re.compile(r"[0-9]{1,5}")
# paramchar = param-unreserved / unreserved / escaped; param-unreserved = [ ] / : & + $
PARAMCHARS = re.compile(rf"(?:[{UNRESERVED}\[\]/:&+$]|{ESCAPED})+")
# hname/hvalue characters: hnv-unreserved = [ ] / ? : + $
HCHARS = re.compile(rf"(?:[{UNRESERVED}\[\]/?:+$]|{ESCAPED})*")
SCHEME = re.compile(r"[a-zA-Z][a-zA-Z0-9+\-.]*")

# Request-Line = Method SP Request-URI SP SIP-Version: exactly one SP each, no LWS in the URI.
REQUEST_LINE = re.compile(rf"([{TOKEN_CHARS}]+) (\S+) (SIP/[0-9]+\.[0-9]+)")
STATUS_LINE = re.compile(r"(SIP/[0-9]+\.[0-9]+) ([0-9]{3})(?: (.*))?", re.DOTALL)
SIP_VERSION = "SIP/2.0"

# quoted-string with quoted-pairs (any octet but CR/LF may be escaped)
QUOTED_STRING = re.compile(r'"(?:[^"\\\r\n]|\\[^\r\n])*"')
LWS = " \t"

COMPACT_FORMS = {
    "v": "via", "f": "from", "t": "to", "i": "call-id", "m": "contact",
    "l": "content-length", "c": "content-type", "k": "supported", "s": "subject",
    "e": "content-encoding", "o": "event", "r": "refer-to", "b": "referred-by",
    "u": "allow-events", "x": "session-expires", "y": "identity", "a": "accept-contact",
    "j": "reject-contact", "d": "request-disposition",
}

CANONICAL_NAMES = {
    name.lower(): name
    for name in (
        "Via", "From", "To", "Call-ID", "CSeq", "Contact", "Max-Forwards", "Content-Length",
        "Content-Type", "Content-Encoding", "Content-Disposition", "Expires", "Min-Expires",
        "Allow", "Supported", "Require", "Proxy-Require", "Unsupported", "Accept",
        "Accept-Encoding", "Accept-Language", "Route", "Record-Route", "WWW-Authenticate",
        "Authorization", "Proxy-Authenticate", "Proxy-Authorization", "User-Agent", "Server",
        "Date", "Timestamp", "Retry-After", "Warning", "Reason", "Subject", "Event",
        "Allow-Events", "Refer-To", "Referred-By", "Session-Expires", "Min-SE", "RSeq", "RAck",
        "Path", "Service-Route", "Organization", "Priority", "Call-Info", "Alert-Info",
        "In-Reply-To", "Reply-To", "MIME-Version", "Authentication-Info", "Error-Info",
        "P-Asserted-Identity", "Privacy", "Diversion", "History-Info",
    )
}

# Headers that RFC 3261 defines as one value only (§7.3.1, §20): a repeat is a 400.
SINGLE_VALUE_HEADERS = frozenset(
    ("from", "to", "call-id", "cseq", "max-forwards", "content-length", "content-type",
     "expires", "min-expires")
)

# Headers whose comma-separated values are list elements (§7.3.1). Authorization and
# WWW-Authenticate are not: their commas separate auth-params.
LIST_HEADERS = frozenset(
    ("via", "contact", "route", "record-route", "allow", "supported", "require",
     "proxy-require", "unsupported", "accept", "accept-encoding", "accept-language", "path",
     "service-route", "allow-events", "in-reply-to", "warning", "error-info", "call-info",
     "alert-info", "content-encoding")
)


def is_number(text: str, max_digits: int = 20) -> bool:
    """1*DIGIT in ASCII. str.isdigit() alone also takes '²' or '١' (int() refuses the first),
    and the length bound keeps int() cheap on hostile input."""
    return 0 < len(text) <= max_digits and text.isascii() and text.isdigit()


def canonical_name(key: str) -> str:
    """The conventional spelling of a lower-case header key, for serialising."""
    name = CANONICAL_NAMES.get(key)
    if name is None:
        name = "-".join(part[:1].upper() + part[1:] for part in key.split("-"))
    return name


def split_list(value: str) -> list[str]:
    """Split a header value on commas that are outside quotes and angle brackets.

    Elements are stripped; an empty element (``a,,b``) is kept as "" so the caller
    can reject it.
    """
    if "," not in value:
        return [value.strip()]
    parts: list[str] = []
    start = 0
    in_quotes = in_angle = False
    i = 0
    n = len(value)
    while i < n:
        ch = value[i]
        if in_quotes:
            if ch == "\\":
                i += 1
            elif ch == '"':
                in_quotes = False
        elif ch == '"':
            in_quotes = True
        elif ch == "<":
            in_angle = True
        elif ch == ">":
            in_angle = False
        elif ch == "," and not in_angle:
            parts.append(value[start:i].strip())
            start = i + 1
        i += 1
    parts.append(value[start:].strip())
    return parts


def unquote(text: str) -> str:
    """The content of a quoted-string, quoted-pairs resolved."""
    inner = text[1:-1]
    if "\\" not in inner:
        return inner
    out = []
    i = 0
    while i < len(inner):
        if inner[i] == "\\" and i + 1 < len(inner):
            i += 1
        out.append(inner[i])
        i += 1
    return "".join(out)


def quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'

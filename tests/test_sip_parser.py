"""The SIP message reader against RFC 4475's torture messages and hand-made edge cases."""

from collections.abc import Callable

import pytest

from softswitch.sip.headers import HeaderError, parse_name_addr, parse_via
from softswitch.sip.message import Request, Response, make_response
from softswitch.sip.parser import (
    BadMessage,
    FramingError,
    StreamFramer,
    Unparseable,
    check_request,
    check_response,
    parse_datagram,
)
from softswitch.sip.uri import SipUri, TelUri, UriError, parse_uri

from .conftest import rfc4475_index, rfc4475_message


def read_request(name: str) -> Request:
    return check_request(parse_datagram(rfc4475_message(name)))


def outcome(name: str) -> str:
    """What the reader decides for a corpus message: ok, drop, or the status to answer."""
    try:
        parsed = parse_datagram(rfc4475_message(name))
        if isinstance(parsed.message, Request):
            check_request(parsed)
        else:
            check_response(parsed)
    except Unparseable:
        return "drop"
    except BadMessage as error:
        return str(error.status)
    return "ok"


# The reader's share of RFC 4475: grammar errors. Semantic answers (420, 415, 406, a 400 for
# a bad Contact in a REGISTER ...) are the UAS core's and are tested over sockets.
READER_VERDICTS = {
    "badinv01": "400", "clerr": "400", "ncl": "400", "scalar02": "400", "quotbal": "400",
    "ltgtruri": "400", "lwsruri": "400", "lwsstart": "400", "trws": "400", "badaspec": "400",
    "baddn": "400", "badvers": "505", "mismatch01": "400", "mismatch02": "400",
    "bigcode": "drop", "insuf": "400", "unkscm": "416", "novelsc": "416", "multi01": "400",
    "mcl01": "400", "scalarlg": "400",
}


@pytest.mark.parametrize("entry", rfc4475_index(), ids=lambda e: e["file"])
def test_corpus_verdict(entry: dict[str, str]) -> None:
    name = entry["file"].removesuffix(".dat")
    expected = READER_VERDICTS.get(name, "ok")
    assert outcome(name) == expected, entry["expected"]


def test_wsinv_tortuous_whitespace() -> None:
    request = read_request("wsinv")
    assert request.method == "INVITE"
    assert request.to is not None and request.to.tag == "1918181833n"
    assert isinstance(request.to.uri, SipUri) and request.to.uri.host == "chair-dnrc.example.com"
    assert request.from_ is not None
    assert request.from_.display_name == 'J Rosenberg \\"'
    assert request.from_.tag == "98asjd8"
    assert request.get("max-forwards") == "0068"
    assert request.cseq is not None and (request.cseq.number, request.cseq.method) == (9, "INVITE")
    assert [(v.transport, v.host) for v in request.vias] == [
        ("UDP", "192.0.2.2"), ("TCP", "spindle.example.com"), ("UDP", "192.168.255.111")]
    assert request.vias[2].branch == "z9hG4bK30239"
    assert request.get("newfangledheader") == "newfangled value continued newfangled value"
    assert request.get("subject") == ""
    contact = request.contacts[0]
    assert contact.display_name == 'Quoted string ""'
    assert contact.params == {"newparam": "newvalue", "secondparam": None, "q": "0.33"}
    assert len(request.body) == 150


def test_escapes_in_uris() -> None:
    request = read_request("esc01")
    uri = request.request_uri
    assert isinstance(uri, SipUri) and uri.user_text == "sips:user@example.com"
    assert request.to is not None and isinstance(request.to.uri, SipUri)
    assert request.to.uri.user_text == "user"
    assert request.from_ is not None and isinstance(request.from_.uri, SipUri)
    assert request.from_.uri.user_text == "I have spaces"
    escnull = read_request("escnull")
    assert [str(c.uri) for c in escnull.contacts] == [
        "sip:%00@host5.example.com", "sip:%00%00@host5.example.com"]


def test_method_and_header_names_are_not_unescaped() -> None:
    request = read_request("esc02")
    assert request.method == "RE%47IST%45R"
    assert len(request.get_all("contact")) == 2
    assert request.get("c%6fntact") == "<sip:alias2@host2.example.com>"


def test_unusual_characters() -> None:
    request = read_request("intmeth")
    assert request.method == "!interesting-Method0123456789_*+`.%indeed'~"
    assert request.to is not None and request.to.display_name == "BEL:\x07 NUL:\x00 DEL:\x7f"
    assert request.from_ is not None
    assert request.from_.display_name == "token1~` token2'+_ token3*%!.-"
    assert request.call_id == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"


def test_other_valid_messages() -> None:
    assert read_request("lwsdisp").from_.display_name == "caller"  # type: ignore[union-attr]
    semi = read_request("semiuri").request_uri
    assert isinstance(semi, SipUri) and semi.user == "user;par=u%40example.net"
    assert [v.transport for v in read_request("transports").vias] == [
        "UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]
    assert read_request("dblreq").body == b""
    mpart = read_request("mpart01")
    assert len(mpart.body) == int(mpart.get("content-length") or 0)
    assert b"\r\n" in mpart.body
    inv2543 = read_request("inv2543")
    assert inv2543.top_via is not None and not inv2543.top_via.is_rfc3261
    long = read_request("longreq")
    assert len(long.get("to") or "") > 100 and len(long.vias) > 5


def test_responses_with_odd_reason_phrases() -> None:
    unreason = check_response(parse_datagram(rfc4475_message("unreason")))
    assert unreason.status == 200 and unreason.reason.startswith("= 2**3 * 5**2")
    noreason = check_response(parse_datagram(rfc4475_message("noreason")))
    assert noreason.status == 100 and noreason.reason == ""


def test_clerr_over_a_stream_waits_for_more_bytes() -> None:
    framer = StreamFramer()
    assert framer.feed(rfc4475_message("clerr")) == []
    assert framer.pending > 0


def test_stream_framing_splits_and_joins() -> None:
    one = rfc4475_message("esc01")
    two = rfc4475_message("lwsdisp")
    framer = StreamFramer()
    stream = b"\r\n\r\n" + one + two  # keep-alive CRLFs first
    got = []
    for i in range(0, len(stream), 7):
        got += framer.feed(stream[i:i + 7])
    assert [p.message.call_id for p in got] == [
        "esc01.239409asdfakjkn23onasd0-3234", "lwsdisp.1234abcd@funky.example.com"]
    assert len(got[0].message.body) == 150
    assert framer.pending == 0


def test_stream_refuses_oversized_and_bad_length() -> None:
    framer = StreamFramer(max_message_size=1000)
    with pytest.raises(FramingError) as too_big:
        framer.feed(b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 5000\r\n\r\n")
    assert too_big.value.status == 513
    with pytest.raises(FramingError) as negative:
        StreamFramer().feed(rfc4475_message("ncl"))
    assert negative.value.status == 400


def test_garbage_is_unparseable() -> None:
    for junk in (b"", b"\x00\x01\x02", b"hello world", b"\r\n\r\n", b"GET / HTTP/1.1\r\n\r\n"):
        with pytest.raises(Unparseable):
            parse_datagram(junk)


def test_uris() -> None:
    uri = parse_uri("sips:alice:secret@[2001:db8::1]:5061;transport=tcp;lr?subject=hi")
    assert isinstance(uri, SipUri)
    assert (uri.scheme, uri.user, uri.password, uri.host, uri.port) == (
        "sips", "alice", "secret", "[2001:db8::1]", 5061)
    assert uri.params == {"transport": "tcp", "lr": None} and uri.headers == "subject=hi"
    assert str(uri) == "sips:alice:secret@[2001:db8::1]:5061;transport=tcp;lr?subject=hi"
    tel = parse_uri("tel:+81-90-1234-5678;phone-context=example.com")
    assert isinstance(tel, TelUri) and tel.number == "+81-90-1234-5678"
    for bad in ("sip:", "sip:user@", "sip:a b@host", "sip:user@host:99999", "nocolon"):
        with pytest.raises(UriError):
            parse_uri(bad)


def test_name_addr_forms() -> None:
    spec = parse_name_addr("sip:alice@example.com;tag=88")
    assert spec.tag == "88" and spec.display_name is None
    assert str(spec) == "<sip:alice@example.com>;tag=88"
    with pytest.raises(HeaderError):
        parse_name_addr("sip:user@example.com?Route=%3Csip:sip.example.com%3E")
    with pytest.raises(HeaderError):
        parse_name_addr('"unterminated <sip:a@b>')
    via = parse_via("SIP/2.0/UDP [::1]:5062;branch=z9hG4bKabc;rport")
    assert (via.host, via.port, via.branch, via.rport) == ("[::1]", 5062, "z9hG4bKabc", True)


def test_response_copies_headers_and_adds_to_tag() -> None:
    request = read_request("lwsdisp")
    response = make_response(request, 200, to_tag="abc", headers=[("x-test", "1")])
    assert response.get("to") == "sip:user@example.com;tag=abc"
    assert response.get_all("via") == request.get_all("via")
    reparsed = check_response(parse_datagram(response.to_bytes()))
    assert isinstance(reparsed, Response) and reparsed.status == 200
    assert reparsed.to is not None and reparsed.to.tag == "abc"
    assert reparsed.get("content-length") == "0"
    assert make_response(request, 100).get("to") == "sip:user@example.com"


FAST_PATH_SAMPLES = [
    "<sip:09010000001@bench.test>;tag=1234SIPpTag001", "<sip:a@127.0.0.1:5061>",
    "<sips:alice@Example.COM:5061;transport=tcp;lr>;expires=60;q=0.5",
    "<sip:example.com;maddr=1.2.3.4>", "<sip:u@h:99999>", "<sip:u@-bad-.com>",
    "<sip:u@h;a=b=c>", "<sip:u@h>;tag", "<sip:user;x=y@host>", "<sip:u@h>;p=\"q\"",
    "<sip:+81-90@h>;+sip.instance=x", "<sip:u@h:5060>;reg-id=1",
    # digits of other scripts are not DIGIT: Arabic-Indic port and host, full-width port
    "<sip:u@h:\u0665\u0660\u0666\u0660>", "<sip:u@\u0661\u0662\u0667.0.0.1>",
    "<sip:u@h:\uff15\uff10\uff16\uff10>",
    # display names: quoted (without escapes: the fast path's), empty, spaced, escaped, tokens
    '"09010000001" <sip:09010000001@bench.test>;tag=1', '""<sip:u@h>', '"a b"  \t<sip:u@h>',
    '"a\\"b" <sip:u@h>', '"\u00dcn\u00ef" <sip:u@h>', '"a" sip:u@h', 'Alice <sip:u@h>',
    '"a"b <sip:u@h>', '"a\tb"<sip:u@h>;x', ' "a" <sip:u@h>',
]
URI_SAMPLES = [
    "sip:09010000001@bench.test", "SIP:U@H.example.COM:5060;Transport=UDP", "sips:h",
    "sip:u:pw@h", "sip:u%41@h", "sip:u@h;p=%41", "sip:u@h?subject=x", "sip:u@[::1]:5060",
    "sip:u@h:0", "sip:u@h:065535", "sip:u@h:65536", "sip:u@h:", "sip:u@h;", "sip:u@h.",
    "sip:u@1.2.3.4.5", "sip:u@999.999.999.999", "tel:+81-90-1234-5678", "sip:u@h\n",
    "sip:u@h:\u0665\u0660", "sip:u@\u0661.\u0661.\u0661.\u0661",
]
VIA_SAMPLES = [
    "SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1;rport", "SIP/2.0/TCP Host.Example.com",
    "SIP/2.0/UDP h:70000;branch=x", "SIP/2.0/UDP h;rport=;received=1.2.3.4",
    "SIP/2.0/TLS h;branch=z9hG4bK.x!y", "SIP/2.0/UDP 1.2.3.4;;",
    "SIP/2.0/UDP \u0661.\u0661.\u0661.\u0661:\u0665\u0660",
]


def _outcome(parse: Callable[[str], object], sample: str) -> str:
    try:
        return repr(parse(sample))
    except (HeaderError, UriError) as error:
        return type(error).__name__


def test_fast_paths_agree_with_the_grammar(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each plain-shape fast path reads exactly what the full grammar reads, and refuses what it
    refuses; the grammar's side reads its URIs by the grammar too."""
    from softswitch.sip import headers, uri

    values = list(FAST_PATH_SAMPLES)
    uris = list(URI_SAMPLES)
    for entry in rfc4475_index():
        try:
            parsed = parse_datagram(rfc4475_message(entry["file"].removesuffix(".dat")))
        except Unparseable:
            continue
        if isinstance(parsed.message, Request):
            uris.append(parsed.message.uri)
        for key in ("from", "to", "contact"):
            values += parsed.message.values(key) if key == "contact" else \
                parsed.message.get_all(key)
    fast_outcomes = {
        (parse.__name__, sample): _outcome(parse, sample)
        for parse, samples in ((headers.parse_name_addr, values),
                               (headers.parse_via, [*values, *VIA_SAMPLES]),
                               (uri.parse_uri, uris))
        for sample in samples
    }
    monkeypatch.setattr(headers, "parse_uri", uri.parse_uri_by_grammar)
    by_grammar = {"parse_name_addr": headers.parse_name_addr_by_grammar,
                  "parse_via": headers.parse_via_by_grammar,
                  "parse_uri": uri.parse_uri_by_grammar}
    for (name, sample), fast in fast_outcomes.items():
        assert fast == _outcome(by_grammar[name], sample), (name, sample)
    assert fast_outcomes[("parse_uri", "sip:u@h:\u0665\u0660")] == "UriError"


def _large_message(call_id: str, header_bytes: int, body_bytes: int) -> bytes:
    """A MESSAGE with about `header_bytes` of headers (padded with X- headers) and a body."""
    head = (f"MESSAGE sip:bob@example.com SIP/2.0\r\n"
            f"Via: SIP/2.0/TCP 192.0.2.10:5060;branch=z9hG4bK{call_id}\r\n"
            "Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=a1\r\n"
            f"To: <sip:bob@example.com>\r\nCall-ID: {call_id}\r\nCSeq: 1 MESSAGE\r\n"
            "Content-Type: text/plain\r\n")
    padding = [f"X-Padding-{i}: {'p' * 60}\r\n" for i in range((header_bytes - len(head)) // 78)]
    body = bytes(ord("a") + i % 26 for i in range(body_bytes))
    return (head + "".join(padding) + f"Content-Length: {body_bytes}\r\n\r\n").encode() + body


def test_a_trickled_large_message_is_framed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """A peer sending one byte per read: the head is split (parsed) once per message, not
    again on every read while the body comes in; the end of the headers is found even though
    its CRLFCRLF arrives in four reads."""
    from softswitch.sip import parser

    splits: list[int] = []
    real_split_head = parser._split_head

    def counting_split_head(head: bytes) -> tuple[str, list[tuple[str, str]], object]:
        splits.append(len(head))
        return real_split_head(head)  # type: ignore[return-value]

    monkeypatch.setattr(parser, "_split_head", counting_split_head)
    big = _large_message("big-1", 16000, 48000)
    small = _large_message("small-2", 300, 10)
    stream = big + b"\r\n" + small  # a keep-alive CRLF between them
    framer = StreamFramer()
    got = []
    for i in range(len(stream)):
        got += framer.feed(stream[i:i + 1])
    assert [p.message.call_id for p in got] == ["big-1", "small-2"]
    assert [p.defect for p in got] == [None, None]
    first = got[0].message
    assert first.body == big[-48000:] and got[1].message.body == b"abcdefghij"
    assert splits == [big.index(b"\r\n\r\n"), small.index(b"\r\n\r\n")]
    assert framer.pending == 0
    assert len(first.headers) == 210 and first.get("content-length") == "48000"
    assert first.headers == parse_datagram(big).message.headers


def test_a_trickled_message_is_framed_as_a_whole_one_is() -> None:
    """Byte by byte or in one piece, bare-LF line ends included: the same messages."""
    stream = b"".join([
        rfc4475_message("esc01"), b"\r\n\r\n", _large_message("m-2", 2000, 300),
        b"OPTIONS sip:a@example.com SIP/2.0\nVia: SIP/2.0/TCP h;branch=z9hG4bKlf\n"
        b"Call-ID: lf-3\nContent-Length: 4\n\nbody",
    ])
    whole = StreamFramer().feed(stream)
    framer = StreamFramer()
    trickled = [p for i in range(len(stream)) for p in framer.feed(stream[i:i + 1])]
    assert [p.message.call_id for p in whole] == ["esc01.239409asdfakjkn23onasd0-3234", "m-2",
                                                  "lf-3"]
    assert [(p.message.to_bytes(), p.message.body) for p in trickled] == \
        [(p.message.to_bytes(), p.message.body) for p in whole]
    assert whole[2].message.body == b"body" and framer.pending == 0


@pytest.mark.parametrize("line", [b"Subject", b"Via", b"garbage line"])
def test_a_header_line_without_a_colon_is_a_400(line: bytes) -> None:
    data = (b"OPTIONS sip:u@h SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"
            b"From: <sip:a@h>;tag=1\r\nTo: <sip:u@h>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n"
            b"Max-Forwards: 70\r\n" + line + b"\r\nContent-Length: 0\r\n\r\n")
    with pytest.raises(BadMessage) as error:
        check_request(parse_datagram(data))
    assert error.value.status == 400 and "malformed header line" in error.value.reason

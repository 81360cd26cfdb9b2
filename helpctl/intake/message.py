"""Parse a client's RFC 5322 e-mail: headers, dates, bodies, charsets, HTML and attachments.

Parsing uses the standard library's `email` package with `email.policy.default`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import email
import email.errors
import email.header
import email.policy
import email.utils
import hashlib
import logging
import mimetypes
import re
import unicodedata
from collections.abc import Iterator
from email.message import EmailMessage
from html.parser import HTMLParser
from typing import Any

from helpctl.cases.model import Person
from helpctl.errors import UsageError
from helpctl.intake.text import _tidy_lines, failed_authentication, guess_language, split_quoted

logger = logging.getLogger(__name__)

# Exceptions from header parsing that mark a header as malformed: its raw value is decoded instead.
_HEADER_ERRORS = (email.errors.HeaderParseError, IndexError, ValueError, TypeError, AttributeError)


@dataclasses.dataclass
class Attachment:
    """A file carried by a message: an attached file, an inline image or a forwarded message."""

    filename: str
    content_type: str
    data: bytes = dataclasses.field(repr=False)
    inline: bool = False
    content_id: str | None = None

    @property
    def size(self) -> int:
        return len(self.data)


@dataclasses.dataclass
class IncomingMessage:
    """The parts of a client's e-mail that intake uses.

    `from_` is the From header (PEP 8 spelling of a keyword). Message ids keep their angle
    brackets (`<id@host>`). `date` is aware and in UTC, or None when the Date header is
    missing or invalid. `body` is the new text and `quoted` the older text that the
    message quotes or forwards.
    """

    message_id: str | None
    in_reply_to: str | None
    references: list[str]
    from_: Person
    to: list[Person]
    cc: list[Person]
    reply_to: list[Person]
    date: dt.datetime | None
    subject: str
    body: str
    quoted: str
    language: str
    attachments: list[Attachment]
    authentication_results: list[str]
    forwarded: bool = False
    sha256: str = ""

    @property
    def authentication_failures(self) -> list[str]:
        return failed_authentication(self.authentication_results)

    @property
    def dkim_spf_failed(self) -> bool:
        return bool(self.authentication_failures)

    def thread_ids(self) -> list[str]:
        """Return the Message-IDs this message replies to: In-Reply-To, then References newest first."""
        candidates = [self.in_reply_to] if self.in_reply_to else []
        candidates += reversed(self.references)
        return list(dict.fromkeys(candidates))

    def key(self) -> str:
        """Return the id that detects a second import: the Message-ID or a content hash."""
        return self.message_id or f"sha256:{self.sha256}"


# ---------------------------------------------------------------------------------------
# Parsing


def parse_message(raw: bytes) -> IncomingMessage:
    """Parse an RFC 5322 message. Raise UsageError when `raw` is not a usable e-mail."""
    if not raw or not raw.strip():
        raise UsageError("the e-mail file is empty", hint="save the message from your mail client as an .eml file")

    message = email.message_from_bytes(raw, policy=email.policy.default)
    if not message.keys():
        raise UsageError(
            "the input is not an e-mail message: it has no header lines",
            hint="save the message from your mail client as an .eml file (RFC 5322) and pass that file",
        )

    senders = _addresses(message, "From")
    if not senders or not senders[0].email:
        raise UsageError(
            "the e-mail has no From header with an address, so the requester is unknown",
            hint="export the original message with all its headers, or open the case by hand with 'helpctl case new'",
        )

    raw_subject, forward_prefix = strip_subject_prefixes(_header_text(message, "Subject"))
    text = _body_text(message)
    body, quoted, forward_separator = split_quoted(text)
    return IncomingMessage(
        message_id=_first_message_id(_header_text(message, "Message-ID")),
        in_reply_to=_first_message_id(_header_text(message, "In-Reply-To")),
        references=_message_ids(_header_text(message, "References")),
        from_=senders[0],
        to=_addresses(message, "To"),
        cc=_addresses(message, "Cc"),
        reply_to=_addresses(message, "Reply-To"),
        date=parse_date(_header_text(message, "Date")),
        subject=raw_subject,
        body=body,
        quoted=quoted,
        language=guess_language(f"{raw_subject}\n{body or quoted}"),
        attachments=_attachments(message),
        authentication_results=_header_values(message, "Authentication-Results"),
        forwarded=forward_prefix or forward_separator,
        sha256=hashlib.sha256(raw).hexdigest(),
    )


def _raw_headers(message: EmailMessage, name: str) -> list[str]:
    """Return the raw values of a header with 8-bit bytes decoded (RFC 6532 or a legacy charset)."""
    return [_repair_surrogates(value) for key, value in message.raw_items() if key.lower() == name.lower()]


def _header_values(message: EmailMessage, name: str) -> list[str]:
    """Return every value of a header as one line of text, with RFC 2047 words decoded."""
    return [" ".join(_decode_raw_header(raw).split()) for raw in _raw_headers(message, name)]


def _header_text(message: EmailMessage, name: str) -> str:
    values = _header_values(message, name)
    return values[0] if values else ""


def _decode_raw_header(value: str) -> str:
    """Decode the RFC 2047 encoded words of a header value.

    The bytes of each encoded word go through `decode_bytes`, so a word whose bytes do not
    match its declared charset is still read (the standard policy would show U+FFFD).
    """
    try:
        parts = email.header.decode_header(value)
    except (email.errors.HeaderParseError, ValueError) as error:
        logger.info("header value kept undecoded: %s", error)
        return value

    pieces = []
    for data, charset in parts:
        if isinstance(data, str):
            pieces.append(data)
        elif charset is None:
            pieces.append(_decode_plain_header_text(data))
        else:
            pieces.append(decode_bytes(data, charset))
    return _repair_surrogates("".join(pieces))


def _decode_plain_header_text(data: bytes) -> str:
    """Decode the text between encoded words, which decode_header returns as raw-unicode-escape bytes."""
    try:
        return data.decode("raw-unicode-escape")
    except UnicodeDecodeError:
        # A literal backslash followed by "u", as in C:\users, is no escape sequence.
        return data.decode("latin-1")


_ESCAPED_BYTES = re.compile("[\udc80-\udcff]+")
_SURROGATES = re.compile("[\ud800-\udfff]")


def _repair_surrogates(text: str) -> str:
    """Decode the bytes that the parser keeps as surrogate escapes: UTF-8, else windows-1252.

    Raw 8-bit headers and encoded words whose bytes are invalid in their charset both
    leave such escapes. Each run of escaped bytes is decoded on its own, so the valid text
    around it stays as it is. Any other surrogate, which UTF-8 cannot store, becomes "?".
    """
    if not _SURROGATES.search(text):
        return text
    repaired = _ESCAPED_BYTES.sub(_decode_escaped_bytes, text)
    return repaired.encode("utf-8", "replace").decode("utf-8")


def _decode_escaped_bytes(match: re.Match[str]) -> str:
    data = match.group().encode("utf-8", "surrogateescape")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def _addresses(message: EmailMessage, name: str) -> list[Person]:
    pairs: list[tuple[str, str]] = []
    for raw in _raw_headers(message, name):
        try:
            header = message.policy.header_fetch_parse(name, raw)
            pairs += [(address.display_name, address.addr_spec) for address in header.addresses]
        except _HEADER_ERRORS:
            pairs += [(_decode_raw_header(display), address) for display, address in email.utils.getaddresses([raw])]

    people = []
    for display_name, address in pairs:
        address = _repair_surrogates(address).strip().lower()
        if "@" in address:
            people.append(Person(email=address, name=" ".join(_repair_surrogates(display_name).split())))
    return people


def _message_ids(value: str) -> list[str]:
    found = [f"<{token}>" for token in re.findall(r"<\s*([^<>\s]+)\s*>", value)]
    if not found and value.strip() and " " not in value.strip():
        found = [f"<{value.strip()}>"]
    return list(dict.fromkeys(found))


def _first_message_id(value: str) -> str | None:
    found = _message_ids(value)
    return found[0] if found else None


def parse_date(value: str) -> dt.datetime | None:
    """Parse an RFC 5322 date into an aware UTC datetime, or None when missing or invalid."""
    if not value.strip():
        return None

    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        logger.info("ignoring an invalid Date header: %r", value[:80])
        return None

    # A naive result comes from the zone "-0000": UTC with the sender's offset unknown.
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return moment.astimezone(dt.timezone.utc)


_SUBJECT_PREFIX = re.compile(r"^\s*(re|fwd|fw|rv)\s*(\[\d+\])?\s*:\s*", re.IGNORECASE)


def strip_subject_prefixes(subject: str) -> tuple[str, bool]:
    """Remove reply and forward prefixes (Re:, RE:, Fwd:, FW:, RV:) from a subject.

    Returns the bare subject and whether a forward prefix was among them.
    """
    forwarded = False
    while True:
        match = _SUBJECT_PREFIX.match(subject)
        if not match:
            break
        forwarded = forwarded or match.group(1).lower() != "re"
        subject = subject[match.end() :]
    return " ".join(subject.split()), forwarded


# ---------------------------------------------------------------------------------------
# MIME bodies and attachments


def _is_text_body(part: EmailMessage) -> bool:
    """Tell whether a leaf part is message text rather than an attached file."""
    if part.get_content_type() not in ("text/plain", "text/html"):
        return False
    return part.get_content_disposition() != "attachment" and not part.get_filename()


def _contains_body(part: EmailMessage, content_type: str) -> bool:
    if part.is_multipart() and part.get_content_maintype() == "multipart":
        return any(_contains_body(child, content_type) for child in part.iter_parts())
    return part.get_content_type() == content_type and _is_text_body(part)


def _body_parts(part: EmailMessage) -> list[EmailMessage]:
    """Return the text parts that make up the message body, in reading order.

    Of the versions in a multipart/alternative the one with text/plain wins, then the one
    with text/html. Other multiparts (mixed, related, signed) contribute all their text.
    """
    if part.get_content_maintype() != "multipart":
        return [part] if _is_text_body(part) else []
    if not part.is_multipart():
        # A multipart without its boundary has a text payload: read it as plain text.
        return [part]

    children = list(part.iter_parts())
    if part.get_content_subtype() == "alternative":
        # Some mailers send an empty text/plain version beside the real HTML one.
        for content_type in ("text/plain", "text/html"):
            for child in children:
                parts = _body_parts(child) if _contains_body(child, content_type) else []
                if any(_decode_text(text_part).strip() for text_part in parts):
                    return parts
        return []

    return [text_part for child in children for text_part in _body_parts(child)]


def _body_text(message: EmailMessage) -> str:
    texts = []
    for part in _body_parts(message):
        text = _decode_text(part)
        if part.get_content_subtype() == "html":
            text = html_to_text(text)
        texts.append(text.strip("\n"))
    return _tidy_lines("\n\n".join(texts))


def _decode_text(part: EmailMessage) -> str:
    data = part.get_payload(decode=True) or b""
    text = decode_bytes(data, part.get_content_charset())
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if part.get_content_subtype() == "plain" and str(part.get_param("format", "")).lower() == "flowed":
        text = _unflow(text, delete_space=str(part.get_param("delsp", "")).lower() == "yes")
    return text


# Labels decoded as windows-1252, as the WHATWG Encoding Standard does for ISO-8859-1
# (https://encoding.spec.whatwg.org/), because much windows-1252 text (curly quotes, the
# euro sign) is labelled Latin-1. Windows-1252 differs from Latin-1 only in 0x80-0x9F.
_WINDOWS_1252_LABELS = frozenset({"iso-8859-1", "iso8859-1", "iso_8859-1", "latin1", "latin-1", "l1", "cp819", "cp1252", "windows-1252"})


def decode_bytes(data: bytes, charset: str | None) -> str:
    """Decode text bytes in the declared charset, falling back to UTF-8 and windows-1252.

    A missing or ASCII label tries UTF-8 first because many mailers send UTF-8 unlabelled.
    When every strict attempt fails, the first known charset decodes with replacement
    characters.
    """
    label = (charset or "").strip().strip('"').lower()
    if label in _WINDOWS_1252_LABELS:
        label = "cp1252"

    candidates = [label] if label and label not in ("us-ascii", "ascii") else []
    candidates += ["utf-8", "cp1252"]
    known = []
    for encoding in candidates:
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            known.append(encoding)
        except (LookupError, ValueError):
            # An unknown or malformed label, such as "x-unknown" or one with a NUL byte.
            logger.info("unknown charset %r in a message part, trying UTF-8", encoding[:40])
    return data.decode(known[0] if known else "utf-8", errors="replace")


def _unflow(text: str, *, delete_space: bool) -> str:
    """Join the soft line breaks of RFC 3676 format=flowed text."""
    lines: list[str] = []
    previous_flowed = False
    previous_depth = 0
    for line in text.split("\n"):
        depth = len(line) - len(line.lstrip(">"))
        content = line[depth:]
        if content.startswith(" "):
            content = content[1:]

        flowed = content.endswith(" ") and content != "-- "
        if flowed and delete_space:
            content = content[:-1]

        if previous_flowed and depth == previous_depth and lines:
            lines[-1] += content
        else:
            lines.append((">" * depth + " " if depth else "") + content)
        previous_flowed, previous_depth = flowed, depth
    return "\n".join(lines)


def _leaf_parts(part: EmailMessage) -> Iterator[EmailMessage]:
    """Yield the parts that are not multipart containers; a forwarded message is one leaf."""
    if part.get_content_maintype() != "multipart":
        yield part
        return
    for child in part.iter_parts():
        yield from _leaf_parts(child)


def _attachments(message: EmailMessage) -> list[Attachment]:
    attachments = []
    for part in _leaf_parts(message):
        if _is_text_body(part):
            continue

        content_type = part.get_content_type()
        if content_type == "message/rfc822":
            data = _forwarded_bytes(part)
        else:
            data = part.get_payload(decode=True) or b""

        content_id = _first_message_id(_header_text(part, "Content-ID"))
        disposition = part.get_content_disposition()
        attachments.append(
            Attachment(
                filename=sanitize_filename(_repair_surrogates(part.get_filename() or ""), content_type, len(attachments) + 1),
                content_type=content_type,
                data=data,
                inline=disposition == "inline" or (disposition is None and content_id is not None),
                content_id=content_id,
            )
        )
    return attachments


def _forwarded_bytes(part: EmailMessage) -> bytes:
    """Return an attached message/rfc822 part as the bytes of a standalone .eml file."""
    payload = part.get_payload()
    if isinstance(payload, list) and payload:
        try:
            return payload[0].as_bytes()
        except (ValueError, TypeError, LookupError, UnicodeError) as error:
            logger.info("attached message kept as sent because it cannot be serialised: %s", error)
    return part.as_bytes()


_FILENAME_MAX_CHARS = 100


def sanitize_filename(name: str, content_type: str, number: int) -> str:
    """Return a file name that is safe to create: no folders, hidden names or odd characters.

    Letters of any script, digits, dots, dashes and underscores are kept. Anything else
    becomes an underscore. A part without a usable name becomes `attachment-<number>` with
    the extension of its content type.
    """
    name = unicodedata.normalize("NFC", name)
    name = re.split(r"[\\/]", name)[-1]
    cleaned = "".join(char if char.isalnum() or char in "._-" else "_" for char in name)
    cleaned = re.sub(r"_+", "_", cleaned)
    cleaned = re.sub(r"_(?=\.)", "", cleaned).strip("._-")
    if not cleaned:
        extension = mimetypes.guess_extension(content_type) or ".bin"
        return f"attachment-{number}{extension}"

    if len(cleaned) > _FILENAME_MAX_CHARS:
        stem, dot, extension = cleaned.rpartition(".")
        if dot and 0 < len(extension) <= 10:
            cleaned = f"{stem[: _FILENAME_MAX_CHARS - len(extension) - 1]}.{extension}"
        else:
            cleaned = cleaned[:_FILENAME_MAX_CHARS]
    return cleaned


# ---------------------------------------------------------------------------------------
# HTML to text


class _HtmlText(HTMLParser):
    """Collect the readable text of an HTML body, one entry per output line.

    Scripts, styles and the head are dropped. Block elements end a line, paragraphs add a
    blank line, list items start with "- ", links keep their http(s) target and lines
    inside a blockquote get a "> " prefix per level, as plain-text replies quote.
    """

    BLOCKS = frozenset(
        "address article aside blockquote center dd div dl dt footer form h1 h2 h3 h4 h5 h6 header hr li main nav ol p pre section table tbody thead tfoot tr ul".split()
    )
    PARAGRAPHS = frozenset("p h1 h2 h3 h4 h5 h6 table ul ol blockquote pre".split())
    HIDDEN = frozenset("script style head title noscript template".split())

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lines: list[list[Any]] = [[0, "", False]]
        self._hidden = 0
        self._quote_depth = 0
        self._preformatted = 0
        self._links: list[tuple[str, int]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "body":
            self._hidden = 0  # A head that was never closed must not hide the body.
        if tag in self.HIDDEN:
            self._hidden += 1
            return

        if tag == "br":
            self._new_line()
        elif tag in self.BLOCKS:
            self._end_line(blank=tag in self.PARAGRAPHS)

        attributes = dict(attrs)
        if tag == "blockquote":
            self._quote_depth += 1
        elif tag == "pre":
            self._preformatted += 1
        elif tag == "li":
            self._write("- ")
        elif tag in ("td", "th") and self.lines[-1][1].strip():
            self._write(" ")
        elif tag == "img" and attributes.get("alt"):
            self._write(f"[image: {attributes['alt']}]")
        elif tag == "a":
            self._links.append((attributes.get("href") or "", len(self._current_text())))

    def handle_endtag(self, tag: str) -> None:
        if tag in self.HIDDEN:
            self._hidden = max(0, self._hidden - 1)
            return

        if tag == "a" and self._links:
            self._close_link()
        if tag in self.BLOCKS:
            self._end_line(blank=tag in self.PARAGRAPHS)
        if tag == "blockquote":
            self._quote_depth = max(0, self._quote_depth - 1)
        elif tag == "pre":
            self._preformatted = max(0, self._preformatted - 1)

    def handle_data(self, data: str) -> None:
        if self._hidden:
            return
        if self._preformatted:
            first, *rest = data.split("\n")
            self._write(first)
            for line in rest:
                self._new_line()
                self._write(line)
            return
        self._write(re.sub(r"\s+", " ", data))

    def _close_link(self) -> None:
        href, start = self._links.pop()
        label = self._current_text()[start:].strip()
        if not re.match(r"https?://", href, re.IGNORECASE):
            return
        if href.rstrip("/") != label.rstrip("/"):
            self._write(f" <{href}>")

    def _current_text(self) -> str:
        return self.lines[-1][1]

    def _write(self, text: str) -> None:
        line = self.lines[-1]
        if not line[1]:
            line[0] = self._quote_depth
            line[2] = bool(self._preformatted)
            text = text if self._preformatted else text.lstrip()
        elif line[1].endswith(" ") and text.startswith(" "):
            text = text[1:]
        line[1] += text

    def _new_line(self) -> None:
        self.lines.append([self._quote_depth, "", bool(self._preformatted)])

    def _end_line(self, *, blank: bool) -> None:
        if self._current_text().strip():
            self._new_line()
        if blank and len(self.lines) >= 2 and self.lines[-2][1].strip():
            self._new_line()

    def text(self) -> str:
        rendered = []
        for depth, text, preformatted in self.lines:
            text = text.rstrip() if preformatted else text.strip()
            prefix = "> " * depth if text else ">" * depth
            rendered.append(prefix + text)
        return _tidy_lines("\n".join(rendered))


def html_to_text(html: str) -> str:
    """Convert an HTML body to readable plain text with the standard library's parser."""
    parser = _HtmlText()
    parser.feed(html)
    parser.close()
    return parser.text()

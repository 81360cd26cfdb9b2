"""Redaction of secrets and personal data from text that leaves the case (issue bodies).

E-mail addresses become stable placeholders: the requester's is `requester`, the others
`user-1`, `user-2`, ... in the order the case lists them and then as they appear. The
requester's full name becomes `requester` too. Credentials (Authorization and Cookie
header values, bearer tokens, JWTs, values after key/token/secret/password, GitLab and
AWS key shapes), phone numbers and IPv4 addresses other than loopback become
`[redacted:<kind>]`. Group and organization names stay, because developers need them.

Percent-encoded runs, such as the query value in `?u=ana.gomez%40kiwicorp.co` or the
double-encoded `%2540`, are decoded and checked by the same rules, so an encoded address
gets the same placeholder as the plain one. A run without personal data is left encoded.

The patterns are heuristics: a phone number needs a `+`, brackets, two separators or a
phone keyword before it, so bare long numbers (ids, epoch times) are kept, and a
four-part version number is taken for an IPv4 address.
"""

from __future__ import annotations

import collections
import re
from collections.abc import Callable
from urllib.parse import quote, unquote

from helpctl.cases.model import Case

REQUESTER = "requester"

_HEADER_VALUE = r"""["']?\s*[:=]\s*["']?(?!\[redacted)([^"'\s][^"'\n]*)"""
_AUTHORIZATION = re.compile(r"(?i)\b((?:proxy-)?authorization" + _HEADER_VALUE + ")")
_COOKIE = re.compile(r"(?i)\b((?:set-)?cookie" + _HEADER_VALUE + ")")
# HAR files keep headers as {"name": "Cookie", "value": "..."}.
_HAR_HEADER = re.compile(
    r'(?i)("name"\s*:\s*"((?:set-)?cookie|(?:proxy-)?authorization)"\s*,\s*"value"\s*:\s*")([^"]*)(")'
)
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*")
_BEARER = re.compile(r"(?i)\b(bearer\s+)(?!\[redacted)([A-Za-z0-9\-._~+/]{8,}=*)")
_KNOWN_KEYS = re.compile(r"\b(?:glpat-[A-Za-z0-9_-]{20,}|AKIA[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{30,})\b")
_KEY_VALUE = re.compile(
    r"(?i)\b((?:[a-z0-9]+[_-])?(api[_-]?key|apikey|access[_-]?key|secret|token|password|passwd|pwd))"
    r"""(["']?\s*[:=]\s*["']?)(?!\[redacted)([^\s"',;&<>]+)"""
)
_EMAIL = re.compile(r"(?<![\w.%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}(?![\w-])")
_IPV4 = re.compile(r"(?<![\w.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?![\w.])")
_PHONE_AFTER_KEYWORD = re.compile(
    r"(?i)\b(phone|tel|telephone|mobile|cell|celular|m[oó]vil|tel[eé]fono|whatsapp)\b([^\d\n+]{0,5})(\+?\d[\d ().-]{6,}\d)"
)
_PHONE = re.compile(
    r"(?<![\w+.-])(?:\+\d{8,15}|(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d{2,4}(?:[ .-]\d{2,5}){1,4})(?![\w.-]?\w)"
)
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
# A run of URL characters holding at least one percent-escape: a query value, a path
# segment or a whole encoded URL. URL delimiters (/ ? # & = : ;) end a run, and `@` does
# not, so an address with only some characters escaped is read whole. The lookbehind
# starts a match only at the start of a run, which keeps the search linear.
_PERCENT_ENCODED = re.compile(r"(?<![\w.~+@%-])[\w.~+@%-]*%[0-9A-Fa-f]{2}[\w.~+@%-]*")
# Decoding stops after this many rounds: `%2540` (`@` encoded twice) needs two, and the
# third covers one more level, such as a link inside a query value of another link.
MAX_DECODE_ROUNDS = 3

# A password may be short; a key, token or secret counts only from this many characters.
MIN_KEY_CHARS = 8


class Redactor:
    """Replace secrets and personal data in text, counting what was replaced by kind."""

    def __init__(self, case: Case | None = None) -> None:
        self._placeholders: dict[str, str] = {}
        self._next_user = 1
        self._requester_name: re.Pattern[str] | None = None
        self.counts: collections.Counter[str] = collections.Counter()
        if case is not None:
            self._learn(case)

    def _learn(self, case: Case) -> None:
        if case.requester.email:
            self._placeholders[_email_key(case.requester.email)] = REQUESTER
        for user in case.subjects.users:
            if _EMAIL.fullmatch(percent_decode(user).strip()):
                self._placeholder(user)

        name = case.requester.name.strip()
        if len(name.split()) >= 2:
            self._requester_name = re.compile(rf"(?<!\w){re.escape(name)}(?!\w)", re.IGNORECASE)

    def _placeholder(self, email: str) -> str:
        key = _email_key(email)
        if key not in self._placeholders:
            self._placeholders[key] = f"user-{self._next_user}"
            self._next_user += 1
        return self._placeholders[key]

    def redact(self, text: str) -> str:
        """Return `text` with every secret and personal datum replaced, in plain or percent-encoded form."""
        text = _PERCENT_ENCODED.sub(self._percent_encoded, text)
        return self._redact_plain(text)

    def _redact_plain(self, text: str) -> str:
        steps: list[tuple[re.Pattern[str], Callable[[re.Match[str]], str]]] = [
            (_HAR_HEADER, self._har_header),
            (_AUTHORIZATION, self._counted("authorization", lambda found: _keep_key(found, "authorization"))),
            (_COOKIE, self._counted("cookie", lambda found: _keep_key(found, "cookie"))),
            (_JWT, self._counted("jwt", lambda found: "[redacted:jwt]")),
            (_BEARER, self._counted("token", lambda found: found.group(1) + "[redacted:token]")),
            (_KNOWN_KEYS, self._counted("token", lambda found: "[redacted:token]")),
            (_KEY_VALUE, self._key_value),
            (_EMAIL, self._email),
            (_IPV4, self._ipv4),
            (_PHONE_AFTER_KEYWORD, self._counted("phone", lambda found: found.group(1) + found.group(2) + "[redacted:phone]")),
            (_PHONE, self._phone),
        ]
        for pattern, replace in steps:
            text = pattern.sub(replace, text)

        if self._requester_name is not None:
            text, count = self._requester_name.subn(REQUESTER, text)
            self.counts["name"] += count
        return text

    def report(self) -> dict[str, int]:
        """Count of replacements by kind (email, token, jwt, phone, ip, ...) so far."""
        return {kind: count for kind, count in sorted(self.counts.items()) if count}

    def _counted(self, kind: str, replace: Callable[[re.Match[str]], str]) -> Callable[[re.Match[str]], str]:
        def replace_and_count(found: re.Match[str]) -> str:
            self.counts[kind] += 1
            return replace(found)

        return replace_and_count

    def _har_header(self, found: re.Match[str]) -> str:
        kind = "cookie" if "cookie" in found.group(2).lower() else "authorization"
        self.counts[kind] += 1
        return f"{found.group(1)}[redacted:{kind}]{found.group(4)}"

    def _key_value(self, found: re.Match[str]) -> str:
        key, separator, value = found.group(1), found.group(3), found.group(4)
        is_password = found.group(2).lower() in ("password", "passwd", "pwd")
        if not is_password and len(value) < MIN_KEY_CHARS:
            return found.group(0)
        self.counts["password" if is_password else "token"] += 1
        return f"{key}{separator}[redacted:{'password' if is_password else 'token'}]"

    def _percent_encoded(self, found: re.Match[str]) -> str:
        """Redact the decoded text of a percent-encoded run, or keep the run as it was when nothing in it is personal."""
        encoded = found.group(0)
        decoded = percent_decode(encoded)
        if decoded == encoded:
            return encoded

        redacted = self._redact_plain(decoded)
        if redacted == decoded:
            return encoded
        # Encode again so that the URL stays one word, but keep placeholders such as
        # `[redacted:phone]` readable.
        return quote(redacted, safe="[]:")

    def _email(self, found: re.Match[str]) -> str:
        self.counts["email"] += 1
        return self._placeholder(found.group(0))

    def _ipv4(self, found: re.Match[str]) -> str:
        address = found.group(0)
        if address.startswith("127.") or address == "0.0.0.0":
            return address
        self.counts["ip"] += 1
        return "[redacted:ip]"

    def _phone(self, found: re.Match[str]) -> str:
        candidate = found.group(0)
        digits = sum(character.isdigit() for character in candidate)
        separators = sum(character in " .-" for character in candidate)
        looks_dialled = candidate.startswith(("+", "(")) or separators >= 2
        if not 8 <= digits <= 15 or not looks_dialled or _DATE.search(candidate):
            return candidate
        self.counts["phone"] += 1
        return "[redacted:phone]"


def percent_decode(text: str) -> str:
    """Decode percent-escapes, up to MAX_DECODE_ROUNDS levels deep, and keep `+` as a plus sign.

    `+` is kept because it is a legal character of an address's local part
    (`pedro.rios+qa@kiwicorp.co`), and reading it as a space would split the address.
    """
    for _ in range(MAX_DECODE_ROUNDS):
        decoded = unquote(text)
        if decoded == text:
            break
        text = decoded
    return text


def _email_key(email: str) -> str:
    return percent_decode(email).strip().lower()


def _keep_key(found: re.Match[str], kind: str) -> str:
    """Keep a header's name and separator, replace its value."""
    whole, value = found.group(1), found.group(2)
    return whole[: len(whole) - len(value)] + f"[redacted:{kind}]"

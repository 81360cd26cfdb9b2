"""Intake: turn a client's e-mail (RFC 5322 bytes) into a new case or an addition to one.

`message` parses the e-mail, `text` reads its wording and `threads` files it in the case store.
"""

from __future__ import annotations

from helpctl.intake.message import (
    Attachment,
    IncomingMessage,
    decode_bytes,
    html_to_text,
    parse_date,
    parse_message,
    sanitize_filename,
    strip_subject_prefixes,
)
from helpctl.intake.text import (
    HELP_ADDRESS,
    PLATFORM_WEB_HOSTS,
    extract_subjects,
    failed_authentication,
    guess_kind,
    guess_language,
    split_quoted,
)
from helpctl.intake.threads import (
    ACTIONS,
    MESSAGE_MAP_FILE,
    MESSAGE_MAP_LOCK,
    MESSAGE_MAP_VERSION,
    REOPEN_REASON,
    IntakeResult,
    MessageIdMap,
    open_or_thread,
)

__all__ = [
    "ACTIONS",
    "HELP_ADDRESS",
    "MESSAGE_MAP_FILE",
    "MESSAGE_MAP_LOCK",
    "MESSAGE_MAP_VERSION",
    "PLATFORM_WEB_HOSTS",
    "REOPEN_REASON",
    "Attachment",
    "IncomingMessage",
    "IntakeResult",
    "MessageIdMap",
    "decode_bytes",
    "extract_subjects",
    "failed_authentication",
    "guess_kind",
    "guess_language",
    "html_to_text",
    "open_or_thread",
    "parse_date",
    "parse_message",
    "sanitize_filename",
    "split_quoted",
    "strip_subject_prefixes",
]

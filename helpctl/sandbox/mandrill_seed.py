"""The Mandrill part of the sandbox story: sent mails and the rejects list (denylist).

Every date is an offset from the `anchor` passed to `build_messages` and `build_rejects`
(aware UTC). The scenarios' mails are fixed; the background mails to other KiwiCorp people
come from a fixed random seed, so every run builds the same data. Message ids are derived
from stable keys, so a test can name a message by its key with `message_id`.

The scenarios' part:
- carlos.ruiz@kiwicorp.co: the invitation to kiwiapp, sent 9 days before the anchor,
  hard-bounced ("550 5.1.1 ... User unknown"). The address went on the rejects list, so
  the reminder sent 2 days before the anchor was rejected without a delivery attempt.
- ana.gomez@kiwicorp.co: every mail of the last 30 days was delivered and opened. Her own
  invitation to kiwiapp is 45 days old, so it is outside the 30-day retention.
- marta, luisa, pedro and nico: delivered mails, some unopened, and an old soft bounce
  for nico whose rejects entry has expired.
- One SMS-shaped activity item without an `email` field, as the newer API returns.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import random
from typing import Any

NOTIFICATIONS_SENDER = "no-reply@fluidattacks.com"
SENDER_NAME = "Fluid Attacks"
# Only mail from these domains is signed, so mail from others is rejected as "unsigned".
VERIFIED_DOMAINS = ("fluidattacks.com",)

ANA = "ana.gomez@kiwicorp.co"
CARLOS = "carlos.ruiz@kiwicorp.co"
LUISA = "luisa.fernandez@kiwicorp.co"
MARTA = "marta.vidal@kiwicorp.co"
NICO = "nico.paez@kiwicorp.co"
PEDRO = "pedro.rios@kiwicorp.co"

CARLOS_BOUNCE_DIAG = (
    "smtp;550 5.1.1 <carlos.ruiz@kiwicorp.co>: Recipient address rejected: "
    "User unknown in virtual mailbox table"
)
NICO_SOFT_BOUNCE_DIAG = "452 4.2.2 The email account that you tried to reach is over quota"
DELIVERED_DIAG = "250 2.0.0 OK queued as {queue_id}"

REJECTS_DATE_FORMAT = "%Y-%m-%d %H:%M:%S"

# Seed of the background mails. Changing it changes every background message.
BACKGROUND_SEED = 20741933
BACKGROUND_COUNT = 36
BACKGROUND_RECIPIENTS = (MARTA, LUISA, PEDRO, NICO, "facturacion@kiwicorp.co", "ti@kiwicorp.co")
BACKGROUND_SUBJECTS = (
    ("Weekly summary of kiwicorp", "weekly-digest", {}),
    ("New vulnerabilities reported in kiwipay", "new-vulnerabilities", {"group": "kiwipay"}),
    ("A vulnerability was closed in kiwiapp", "vulnerability-closed", {"group": "kiwiapp"}),
    ("New comment on a finding of kiwiapp", "finding-comment", {"group": "kiwiapp"}),
    ("Your kiwicorp report is ready", "report-ready", {}),
)


@dataclasses.dataclass
class SeedMessage:
    """One sent mail; `age` is how long before the anchor it was sent."""

    key: str
    email: str
    subject: str
    age: dt.timedelta
    state: str = "sent"
    template: str | None = None
    tags: list[str] = dataclasses.field(default_factory=list)
    metadata: dict[str, str] = dataclasses.field(default_factory=dict)
    opens: int = 0
    clicks: int = 0
    diag: str | None = None
    bounce_description: str | None = None
    reject_reason: str | None = None
    sender: str = NOTIFICATIONS_SENDER


@dataclasses.dataclass
class SeedReject:
    email: str
    reason: str
    detail: str
    age: dt.timedelta  # created this long before the anchor
    lifetime: dt.timedelta | None  # None: the entry never expires
    last_event_age: dt.timedelta | None = None


def message_id(key: str) -> str:
    """Return the 32-hex-digit `_id` of the seed message named `key`."""
    return hashlib.md5(f"sandbox-mandrill:{key}".encode("utf-8")).hexdigest()


def _hours(value: float) -> dt.timedelta:
    return dt.timedelta(hours=value)


def _days(value: float) -> dt.timedelta:
    return dt.timedelta(days=value)


SCENARIO_MESSAGES = [
    SeedMessage(
        key="carlos-invitation",
        email=CARLOS,
        subject="You have been invited to kiwiapp",
        age=_days(9),
        state="bounced",
        template="group-invitation",
        tags=["invitation"],
        metadata={"group": "kiwiapp", "inviter": ANA},
        diag=CARLOS_BOUNCE_DIAG,
        bounce_description="bad_mailbox",
    ),
    SeedMessage(
        key="carlos-invitation-reminder",
        email=CARLOS,
        subject="Reminder: you have been invited to kiwiapp",
        age=_days(2),
        state="rejected",
        template="group-invitation-reminder",
        tags=["invitation"],
        metadata={"group": "kiwiapp", "inviter": ANA},
        reject_reason="hard-bounce",
    ),
    SeedMessage(
        key="ana-report-ready",
        email=ANA,
        subject="Your kiwiapp report is ready",
        age=_hours(5),
        template="report-ready",
        tags=["report"],
        metadata={"group": "kiwiapp"},
        opens=1,
        clicks=1,
    ),
    SeedMessage(
        key="ana-new-vulnerabilities",
        email=ANA,
        subject="New vulnerabilities reported in kiwiapp",
        age=_days(3),
        template="new-vulnerabilities",
        tags=["notification"],
        metadata={"group": "kiwiapp"},
        opens=2,
        clicks=1,
    ),
    SeedMessage(
        key="ana-weekly-summary",
        email=ANA,
        subject="Weekly summary of kiwicorp",
        age=_days(7) + _hours(3),
        template="weekly-digest",
        tags=["digest"],
        opens=1,
    ),
    SeedMessage(
        key="ana-invitation",
        email=ANA,
        subject="You have been invited to kiwiapp",
        age=_days(45),
        template="group-invitation",
        tags=["invitation"],
        metadata={"group": "kiwiapp"},
        opens=1,
        clicks=1,
    ),
    SeedMessage(
        key="marta-new-vulnerabilities",
        email=MARTA,
        subject="New vulnerabilities reported in kiwiapp",
        age=_days(3),
        template="new-vulnerabilities",
        tags=["notification"],
        metadata={"group": "kiwiapp"},
        opens=1,
    ),
    SeedMessage(
        key="pedro-access-granted",
        email=PEDRO,
        subject="Access granted to kiwipay",
        age=_days(20),
        template="access-granted",
        tags=["access"],
        metadata={"group": "kiwipay"},
        opens=1,
    ),
    SeedMessage(
        key="nico-welcome-soft-bounce",
        email=NICO,
        subject="Welcome to Fluid Attacks",
        age=_days(25),
        state="soft-bounced",
        template="welcome",
        tags=["welcome"],
        diag=NICO_SOFT_BOUNCE_DIAG,
        bounce_description="mailbox_full",
    ),
    SeedMessage(
        key="nico-welcome",
        email=NICO,
        subject="Welcome to Fluid Attacks",
        age=_days(24),
        template="welcome",
        tags=["welcome"],
    ),
]

SCENARIO_REJECTS = [
    SeedReject(
        email=CARLOS,
        reason="hard-bounce",
        detail=CARLOS_BOUNCE_DIAG,
        age=_days(9) - dt.timedelta(seconds=40),
        # NOTE: the 90-day lifetime of hard-bounce entries is the stand-in's choice, and
        # real accounts may keep them longer.
        lifetime=_days(90),
        last_event_age=_days(2),
    ),
    SeedReject(
        email=NICO,
        reason="soft-bounce",
        detail=NICO_SOFT_BOUNCE_DIAG,
        age=_days(25),
        lifetime=_days(1),
    ),
    SeedReject(
        email="antiguo.admin@kiwicorp.co",
        reason="unsub",
        detail="Unsubscribed from the weekly summary",
        age=_days(50),
        lifetime=None,
    ),
    SeedReject(
        email="compras@kiwicorp.co",
        reason="spam",
        detail="Marked a weekly summary as spam",
        age=_days(12),
        lifetime=None,
    ),
]


def _timestamp(moment: dt.datetime) -> int:
    return int(moment.timestamp())


def message_record(seed: SeedMessage, anchor: dt.datetime) -> dict[str, Any]:
    """Build the full `messages/info` record of a seed message."""
    sent_at = anchor - seed.age
    ts = _timestamp(sent_at)
    record: dict[str, Any] = {
        "ts": ts,
        "_id": message_id(seed.key),
        "sender": seed.sender,
        "template": seed.template,
        "subject": seed.subject,
        "email": seed.email,
        "tags": list(seed.tags),
        "opens": seed.opens,
        "clicks": seed.clicks,
        "state": seed.state,
        "metadata": dict(seed.metadata),
        "subaccount": None,
        "resends": [],
        "reject": None,
        "diag": seed.diag,
        "bounce_description": seed.bounce_description,
        "opens_detail": [_open(ts + 600 * (index + 1)) for index in range(seed.opens)],
        "clicks_detail": [_click(ts + 700 * (index + 1)) for index in range(seed.clicks)],
        "smtp_events": _smtp_events(seed, ts),
    }

    if seed.state == "rejected":
        record["reject"] = {"reason": seed.reject_reason, "last_event_at": sent_at.strftime(REJECTS_DATE_FORMAT)}
    if seed.state == "sent":
        record["diag"] = DELIVERED_DIAG.format(queue_id=record["_id"][:10].upper())
    return record


def _open(ts: int) -> dict[str, Any]:
    return {"ts": ts, "location": "Bogota, CO", "ua": "Chrome/Windows"}


def _click(ts: int) -> dict[str, Any]:
    return {"ts": ts, "url": "http://127.0.0.1:8701/orgs/kiwicorp", "location": "Bogota, CO", "ua": "Chrome/Windows"}


def _smtp_events(seed: SeedMessage, ts: int) -> list[dict[str, Any]]:
    # A rejected message never reaches an SMTP server, so it has no events.
    if seed.state == "rejected":
        return []
    if seed.state == "sent":
        diag = DELIVERED_DIAG.format(queue_id=message_id(seed.key)[:10].upper())
        return [{"ts": ts + 2, "type": "sent", "diag": diag}]
    if seed.state == "soft-bounced":
        return [
            {"ts": ts + 2, "type": "deferred", "diag": seed.diag},
            {"ts": ts + 3600, "type": "soft-bounced", "diag": seed.diag},
        ]
    return [{"ts": ts + 2, "type": seed.state, "diag": seed.diag}]


def background_messages() -> list[SeedMessage]:
    """Return the notification mails to other KiwiCorp people (never ana or carlos)."""
    generator = random.Random(BACKGROUND_SEED)
    messages = []
    for index in range(BACKGROUND_COUNT):
        subject, template, metadata = generator.choice(BACKGROUND_SUBJECTS)
        messages.append(
            SeedMessage(
                key=f"background-{index}",
                email=generator.choice(BACKGROUND_RECIPIENTS),
                subject=subject,
                age=_hours(generator.uniform(1, 60 * 24)),
                template=template,
                tags=["notification"],
                metadata=dict(metadata),
                opens=generator.choice((0, 0, 1, 2)),
            )
        )
    return messages


def sms_record(anchor: dt.datetime) -> dict[str, Any]:
    """Build the one SMS activity item: it has `to`/`from` and no `email` field."""
    return {
        "ts": _timestamp(anchor - _days(1)),
        "_id": message_id("sms-verification"),
        "channel": "sms",
        "to": "+570000000000",
        "from": "+570000000001",
        "text": "Your Fluid Attacks verification code is 000000",
        "state": "sent",
        "sms_events": [],
    }


def build_messages(anchor: dt.datetime) -> list[dict[str, Any]]:
    """Build every seeded activity item (mails and the SMS), oldest first."""
    records = [message_record(seed, anchor) for seed in SCENARIO_MESSAGES + background_messages()]
    records.append(sms_record(anchor))
    return sorted(records, key=lambda record: record["ts"])


def reject_record(seed: SeedReject, anchor: dt.datetime) -> dict[str, Any]:
    created = anchor - seed.age
    last_event = anchor - seed.last_event_age if seed.last_event_age is not None else created
    expires = created + seed.lifetime if seed.lifetime is not None else None
    return {
        "email": seed.email,
        "reason": seed.reason,
        "detail": seed.detail,
        "created_at": created.strftime(REJECTS_DATE_FORMAT),
        "last_event_at": last_event.strftime(REJECTS_DATE_FORMAT),
        "expires_at": expires.strftime(REJECTS_DATE_FORMAT) if expires else None,
        "expired": False,  # computed by the service at request time
        "sender": None,
        "subaccount": None,
    }


def build_rejects(anchor: dt.datetime) -> list[dict[str, Any]]:
    return [reject_record(seed, anchor) for seed in SCENARIO_REJECTS]

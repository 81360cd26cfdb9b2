"""Redaction of e-mail addresses, credentials, phones and addresses from outgoing text."""

from __future__ import annotations

import pytest

from helpctl.cases.model import Case, Person, Subjects
from helpctl.redact import Redactor

JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbmEuZ29tZXpAa2l3aWNvcnAuY28ifQ.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"


@pytest.fixture
def case():
    return Case(
        id="250301-k1w1ab",
        profile="sandbox",
        subject="Counter wrong",
        requester=Person("Ana.Gomez@kiwicorp.co", "Ana Gómez"),
        organization="kiwicorp",
        subjects=Subjects(users=["carlos.ruiz@kiwicorp.co"], groups=["kiwiapp"], organizations=["kiwicorp"]),
    )


def test_requester_email(case):
    redactor = Redactor(case)

    assert redactor.redact("from ana.gomez@kiwicorp.co") == "from requester"


def test_known_users_numbered_first(case):
    redactor = Redactor(case)

    text = redactor.redact("pedro.rios@kiwicorp.co and carlos.ruiz@kiwicorp.co")

    assert text == "user-2 and user-1"


def test_placeholders_stable(case):
    redactor = Redactor(case)

    first = redactor.redact("luisa.fernandez@kiwicorp.co")
    second = redactor.redact("again LUISA.FERNANDEZ@kiwicorp.co")

    assert first == "user-2"
    assert second == "again user-2"


def test_names_of_groups_kept(case):
    text = Redactor(case).redact("group kiwiapp of organization kiwicorp (ORG#6c1f2f4e-2b7a-4c8e-9a51-3d0e5b7f9a10)")

    assert text == "group kiwiapp of organization kiwicorp (ORG#6c1f2f4e-2b7a-4c8e-9a51-3d0e5b7f9a10)"


def test_requester_name(case):
    redactor = Redactor(case)

    assert redactor.redact("Regards, ana gómez") == "Regards, requester"
    assert redactor.report() == {"name": 1}


def test_no_personal_email_left(case):
    text = "ana.gomez@kiwicorp.co, nico.paez@kiwicorp.co; <marta.vidal@kiwicorp.co> mailto:pedro.rios+test@kiwicorp.co"

    redacted = Redactor(case).redact(text)

    assert "@" not in redacted


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Authorization: Bearer abcdefghijklmnop123", "Authorization: [redacted:authorization]"),
        ('curl -H "authorization: token sandbox-gitlab-token" x', 'curl -H "authorization: [redacted:authorization]" x'),
        ('{"Authorization": "Bearer abc.def.ghi123"}', '{"Authorization": "[redacted:authorization]"}'),
        ("Cookie: session=abc123; csrftoken=zzzz", "Cookie: [redacted:cookie]"),
        ("Set-Cookie: integrates_session=xyz; HttpOnly", "Set-Cookie: [redacted:cookie]"),
        ('{"name": "Cookie", "value": "session=abc"}', '{"name": "Cookie", "value": "[redacted:cookie]"}'),
        ("sent Bearer abcdefghijklmnop123 twice", "sent Bearer [redacted:token] twice"),
        (f"jwt {JWT} end", "jwt [redacted:jwt] end"),
        ("api_key=0123456789abcdef0123456789abcdef", "api_key=[redacted:token]"),
        ('"client_secret": "c2VjcmV0LXZhbHVlLTEyMzQ="', '"client_secret": "[redacted:token]"'),
        ("X-Api-Key: AbCdEf0123456789==", "X-Api-Key: [redacted:token]"),
        ("password: hunter2", "password: [redacted:password]"),
        ("glpat-abcdefghijklmnopqrstuv", "[redacted:token]"),
        ("AKIAABCDEFGHIJKLMNOP", "[redacted:token]"),
    ],
)
def test_credentials(text, expected):
    assert Redactor().redact(text) == expected


def test_short_token_word_kept():
    assert Redactor().redact("token: 7 and the token expired") == "token: 7 and the token expired"


@pytest.mark.parametrize(
    "phone",
    ["+57 300 123 4567", "+573001234567", "(601) 555-0199", "300 123 4567", "300-123-4567", "+1 (415) 555 0100"],
)
def test_phones(phone):
    redactor = Redactor()

    assert redactor.redact(f"call {phone} today") == "call [redacted:phone] today"
    assert redactor.report() == {"phone": 1}


def test_phone_after_keyword():
    assert Redactor().redact("teléfono: 3001234567") == "teléfono: [redacted:phone]"


@pytest.mark.parametrize(
    "text",
    [
        "2025-03-01T12:00:00Z",
        "2025-03-01 12:00:00",
        "epoch 1700000000",
        "limit 1048576 characters",
        "7 open vs 4 listed, 120 in kiwipay",
        "version 1.2.3",
        "case 250301-k1w1ab",
    ],
)
def test_numbers_kept(text):
    assert Redactor().redact(text) == text


def test_client_ip_redacted():
    redactor = Redactor()

    assert redactor.redact("from 181.49.10.22 via 127.0.0.1") == "from [redacted:ip] via 127.0.0.1"
    assert redactor.report() == {"ip": 1}


def test_report_counts(case):
    redactor = Redactor(case)

    redactor.redact(f"ana.gomez@kiwicorp.co {JWT} +57 300 123 4567 Bearer abcdefghijklmnop123 pedro.rios@kiwicorp.co")

    assert redactor.report() == {"email": 2, "jwt": 1, "phone": 1, "token": 1}


def test_placeholders_not_redacted_again():
    redactor = Redactor()

    once = redactor.redact("token=abcdefghijklmnop Authorization: Basic dXNlcjpwYXNz")

    assert redactor.redact(once) == once

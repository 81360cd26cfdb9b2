"""Tests of e-mail intake: parsing RFC 5322 messages and filing them as cases."""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import hashlib
import importlib.resources
import json
import random
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from helpctl.cases.store import CaseStore
from helpctl.errors import UsageError
from helpctl.intake import (
    MESSAGE_MAP_FILE,
    REOPEN_REASON,
    IncomingMessage,
    MessageIdMap,
    decode_bytes,
    extract_subjects,
    failed_authentication,
    guess_kind,
    guess_language,
    html_to_text,
    open_or_thread,
    parse_date,
    parse_message,
    sanitize_filename,
    split_quoted,
    strip_subject_prefixes,
)

EMAILS = Path(__file__).parent / "data" / "emails"
ACTOR = "support.sandbox@fluidattacks.com"
DEMO_ID = "<CAKw7f3a9c21.20261203091200.ana@mail.kiwicorp.co>"
UTC = dt.timezone.utc


def read(name: str) -> bytes:
    return (EMAILS / name).read_bytes()


def demo_bytes() -> bytes:
    return importlib.resources.files("helpctl.demo").joinpath("kiwicorp-vulnerabilities.eml").read_bytes()


def parse(name: str) -> IncomingMessage:
    return parse_message(read(name))


def file_message(store: CaseStore, raw: bytes, **options):
    return open_or_thread(store, parse_message(raw), raw, profile="sandbox", actor=ACTOR, **options)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


@pytest.fixture
def store(tmp_path: Path) -> CaseStore:
    return CaseStore(tmp_path / "cases")


# ---------------------------------------------------------------------------------------
# Parsing


def test_plain_ascii_fields():
    raw = read("plain-ascii.eml")
    message = parse_message(raw)

    assert b"\r\n" in raw
    assert message.message_id == "<20261204154510.4821@mail.kiwicorp.co>"
    assert message.in_reply_to is None
    assert message.references == []
    assert message.from_.email == "luisa.fernandez@kiwicorp.co"
    assert message.from_.name == "Luisa Fernandez"
    assert [person.email for person in message.to] == ["help@fluidattacks.com"]
    assert [person.email for person in message.cc] == ["ana.gomez@kiwicorp.co", "pedro.rios@kiwicorp.co"]
    assert message.cc[0].name == "Ana Gomez"
    assert [person.email for person in message.reply_to] == ["luisa.fernandez@kiwicorp.co"]
    assert message.date == dt.datetime(2026, 12, 4, 15, 45, 10, tzinfo=UTC)
    assert message.date.utcoffset() == dt.timedelta(0)
    assert message.subject == "Question about the findings report"
    assert message.body.startswith("Hello team,\n\nWhere can I download")
    assert message.body.endswith("Thanks,\nLuisa")
    assert "\r" not in message.body
    assert message.quoted == ""
    assert message.language == "en"
    assert message.attachments == []
    assert len(message.authentication_results) == 1
    assert "spf=pass smtp.mailfrom=luisa.fernandez@kiwicorp.co" in message.authentication_results[0]
    assert message.dkim_spf_failed is False
    assert message.forwarded is False
    assert message.sha256 == hashlib.sha256(raw).hexdigest()


def test_spanish_quoted_printable_utf8():
    message = parse("spanish-qp-utf8.eml")

    assert message.from_.name == "José Núñez"
    assert message.from_.email == "jose.nunez@kiwicorp.co"
    assert message.subject == "Vulnerabilidades no aparecen – grupo kiwiapp"
    assert message.body.startswith("Buenos días,")
    assert "no aparecen en la pestaña de reportes. ¿Podrían revisarlo?" in message.body
    assert message.body.endswith("José Núñez")
    assert message.language == "es"
    assert message.date == dt.datetime(2026, 12, 7, 13, 5, 33, tzinfo=UTC)


def test_base64_latin1_body():
    message = parse("base64-latin1.eml")

    assert message.from_.name == "Pedro Ríos"
    assert message.subject == "Solicitud de acceso para María"
    assert "la revisión de pagos." in message.body
    assert "Año 2026 - Área de Tecnología" in message.body
    assert "\ufffd" not in message.body
    assert message.language == "es"


def test_windows_1252_body_and_header():
    message = parse("windows-1252.eml")

    assert message.subject == "Política de acceso – grupo kiwiapp"
    assert "La “Política de aceptación de riesgo” del grupo kiwiapp" in message.body
    assert "umbral de 5 € aparece un error – el botón" in message.body
    assert "\ufffd" not in message.body


def test_multipart_attachments():
    message = parse("mixed-attachments.eml")

    assert message.body.startswith("Hello,\n\nThe report of the group kiwipay")
    assert "<p>" not in message.body
    assert "multi-part message" not in message.body
    assert len(message.attachments) == 2

    image, report = message.attachments
    assert image.filename == "attachment-1.png"
    assert image.content_type == "image/png"
    assert image.inline is True
    assert image.content_id == "<chart.7f3a@kiwicorp.co>"
    assert image.data.startswith(b"\x89PNG\r\n\x1a\n")
    assert image.size == 770

    assert report.filename == "informe_año_2026_final.pdf"
    assert report.content_type == "application/pdf"
    assert report.inline is False
    assert report.data.startswith(b"%PDF-1.4")
    assert report.data.rstrip().endswith(b"%%EOF")


def test_html_only_body():
    message = parse("html-only.eml")
    lines = message.body.split("\n")

    assert lines[0] == "Hola,"
    assert "Mensaje" not in message.body
    assert "color" not in message.body
    assert "alert" not in message.body
    assert (
        "Al descargar el reporte de la organización desde este enlace "
        "<https://app.fluidattacks.com/orgs/kiwicorp/groups/kiwipay/analytics> aparece un error 500."
    ) in lines
    assert "- Entrar a Analytics" in lines
    assert '- Pulsar "Descargar" & esperar' in lines
    assert "Navegador Firefox 133" in lines
    assert message.body.endswith("Gracias,\nDiego")
    assert "\n\n\n" not in message.body
    assert message.attachments == []
    assert message.language == "es"


def test_reply_fields_and_quote():
    message = parse("reply-spanish.eml")

    assert message.message_id == "<CAKw9b8e1d02.20261204101500.ana@mail.kiwicorp.co>"
    assert message.in_reply_to == DEMO_ID
    assert message.references == [DEMO_ID]
    assert message.subject == "Vulnerabilidades no aparecen – grupo kiwiapp"
    assert message.body == (
        "Hola de nuevo,\n\nHoy el grupo kiwiapp sigue igual. luisa.fernandez@kiwicorp.co "
        "también lo confirmó.\n\nSaludos,\nAna"
    )
    assert message.quoted.startswith("El jue, 3 dic 2026 a las 9:12, Ana Gómez (<\nana.gomez@kiwicorp.co>) escribió:")
    assert "> En la organización kiwicorp, grupo kiwiapp" in message.quoted
    assert message.forwarded is False


def test_references_only_fields():
    message = parse("reply-references-only.eml")

    assert message.in_reply_to is None
    assert message.references == [DEMO_ID, "<CAHelp.0001.reply@fluidattacks.com>"]
    assert message.thread_ids() == ["<CAHelp.0001.reply@fluidattacks.com>", DEMO_ID]
    assert message.subject == "Vulnerabilidades no aparecen – grupo kiwiapp"


def test_forwarded_message():
    message = parse("forwarded.eml")

    assert message.forwarded is True
    assert message.subject == "No puedo ver el grupo kiwipay"
    assert message.body == "Les reenvío el correo de Luisa."
    assert message.quoted.startswith("---------- Forwarded message ---------\nFrom: Luisa Fernández")
    assert '"Access denied" al abrirlo.' in message.quoted


def test_dkim_failure():
    message = parse("dkim-fail.eml")

    assert len(message.authentication_results) == 2
    assert message.authentication_failures == ["dkim=fail", "spf=softfail"]
    assert message.dkim_spf_failed is True


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["mx.test; dkim=pass header.d=kiwicorp.co; spf=pass smtp.mailfrom=kiwicorp.co"], []),
        (["mx.test; dkim=fail header.d=kiwicorp.co"], ["dkim=fail"]),
        (["mx.test; spf=fail smtp.mailfrom=kiwicorp.co"], ["spf=fail"]),
        (["mx.test; SPF=SoftFail smtp.mailfrom=kiwicorp.co"], ["spf=softfail"]),
        (["mx.test; dkim=softfail header.d=kiwicorp.co"], []),
        (["mx.test; spf=neutral; dkim=none; dmarc=fail"], []),
        (["mx.test; dkim=pass (dkim=fail in an earlier hop) header.d=kiwicorp.co"], []),
        (["mx.test; arc=fail header.dkim=fail"], []),
        ([], []),
    ],
)
def test_failed_authentication_table(values, expected):
    assert failed_authentication(values) == expected


def test_missing_date():
    message = parse("no-date.eml")

    assert message.date is None
    assert message.from_.email == "nico.paez@kiwicorp.co"
    assert message.from_.name == ""


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Thu, 3 Dec 2026 09:12:00 -0500", dt.datetime(2026, 12, 3, 14, 12, tzinfo=UTC)),
        ("3 Dec 2026 09:12:00 +0100", dt.datetime(2026, 12, 3, 8, 12, tzinfo=UTC)),
        ("Thu, 3 Dec 2026 09:12:00 -0000", dt.datetime(2026, 12, 3, 9, 12, tzinfo=UTC)),
        ("yesterday afternoon", None),
        ("Thu, 45 Foo 2026", None),
        ("", None),
    ],
)
def test_parse_date_table(value, expected):
    assert parse_date(value) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"", "empty"),
        (b"  \r\n\n ", "empty"),
        ((EMAILS / "not-an-email.txt").read_bytes(), "not an e-mail message"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "not an e-mail message"),
        ((EMAILS / "no-from.eml").read_bytes(), "no From header"),
        (b"From: undisclosed-recipients:;\nSubject: hi\n\nbody\n", "no From header"),
    ],
)
def test_bad_input_raises_usage_error(raw, expected):
    with pytest.raises(UsageError) as caught:
        parse_message(raw)

    assert expected in caught.value.message
    assert "\n" not in caught.value.message
    assert caught.value.hint


@pytest.mark.parametrize(
    ("subject", "expected", "forwarded"),
    [
        ("Re: Access", "Access", False),
        ("RE: RE: Access", "Access", False),
        ("Fwd: Access", "Access", True),
        ("FW: Re: Access", "Access", True),
        ("RV: Acceso", "Acceso", True),
        ("Re[2]:  Acceso   al  grupo", "Acceso al grupo", False),
        ("Reporte de acceso", "Reporte de acceso", False),
        ("Regarding: access", "Regarding: access", False),
    ],
)
def test_subject_prefixes_stripped(subject, expected, forwarded):
    assert strip_subject_prefixes(subject) == (expected, forwarded)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hola, no puedo ver las vulnerabilidades del grupo. Gracias por la ayuda.", "es"),
        ("Hello, I cannot see the vulnerabilities of the group. Thanks for the help.", "en"),
        ("kiwiapp 7 4", "en"),
        ("", "en"),
        ("Buenos días: the link https://app.fluidattacks.com/orgs/kiwicorp no funciona para nosotros", "es"),
    ],
)
def test_language_guess(text, expected):
    assert guess_language(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Please add carlos.ruiz@kiwicorp.co to the group kiwiapp", "access-request"),
        ("Could you revoke the access of nico.paez@kiwicorp.co?", "access-request"),
        ("Please change the role of luisa to vulnerability manager", "access-request"),
        ("Por favor quitar el acceso de pedro.rios@kiwicorp.co al grupo kiwipay", "access-request"),
        ("Necesitamos cambiar el rol de Marta", "access-request"),
        ("We would like to export findings as CSV", "feature-request"),
        ("Could you add a dark mode to the dashboard?", "feature-request"),
        ("Me gustaría recibir un resumen semanal", "feature-request"),
        ("The report download fails with an error", "problem"),
        ("El reporte no funciona desde ayer", "problem"),
        ("Vulnerabilidades no aparecen – grupo kiwiapp", "problem"),
        ("Where can I find the findings report?", "question"),
        ("¿Cómo descargo el reporte?", "question"),
    ],
)
def test_kind_guess(text, expected):
    assert guess_kind(text) == expected


def test_split_quoted_interleaved_replies():
    text = (
        "On Thu, Dec 3, 2026 at 9:12 AM Support <help@fluidattacks.com> wrote:\n"
        "> Which group is it?\n"
        "kiwiapp\n"
        "> Since when?\n"
        "Since Monday.\n"
    )

    body, quoted, forwarded = split_quoted(text)

    assert body == "kiwiapp\nSince Monday."
    assert quoted.split("\n") == [
        "On Thu, Dec 3, 2026 at 9:12 AM Support <help@fluidattacks.com> wrote:",
        "> Which group is it?",
        "> Since when?",
    ]
    assert forwarded is False


def test_split_quoted_outlook_header_block():
    text = "Thanks, that solved it.\n\n________________________________\nDe: Fluid Attacks Help\nEnviado: jueves, 3 de diciembre\nPara: Ana\nAsunto: RE: acceso\n\nHola Ana, ya quedó."

    body, quoted, forwarded = split_quoted(text)

    assert body == "Thanks, that solved it."
    assert quoted.startswith("De: Fluid Attacks Help\nEnviado:")
    assert quoted.endswith("Hola Ana, ya quedó.")
    assert forwarded is False


def test_split_quoted_original_message_separator():
    body, quoted, _ = split_quoted("Same here.\n\n-----Original Message-----\nFrom: Ana\nOld text")

    assert body == "Same here."
    assert quoted == "-----Original Message-----\nFrom: Ana\nOld text"


def test_split_quoted_keeps_sentence_before_attribution():
    text = "El tablero sigue mostrando 7.\nEl jue, 3 dic 2026 a las 9:12, Ana escribió:\n> viejo"

    body, quoted, _ = split_quoted(text)

    assert body == "El tablero sigue mostrando 7."
    assert quoted == "El jue, 3 dic 2026 a las 9:12, Ana escribió:\n> viejo"


def test_split_quoted_plain_text_untouched():
    body, quoted, forwarded = split_quoted("On Monday the export failed.\nIt still fails.")

    assert body == "On Monday the export failed.\nIt still fails."
    assert quoted == ""
    assert forwarded is False


def test_html_blockquote_becomes_quote():
    html = (
        "<div>Sigue igual.</div><div class='gmail_quote'>"
        "<div>El jue, 3 dic 2026 a las 9:12, Ana escribió:</div>"
        "<blockquote><p>Hola equipo,</p><p>el tablero muestra 7</p></blockquote></div>"
    )

    text = html_to_text(html)
    body, quoted, _ = split_quoted(text)

    assert body == "Sigue igual."
    assert "> Hola equipo," in quoted.split("\n")
    assert "> el tablero muestra 7" in quoted.split("\n")


def test_html_pre_and_unclosed_head():
    html = "<html><head><title>x</title><body><pre>  line one\n    line two</pre><p>A&nbsp;&amp;&nbsp;B</p>"

    text = html_to_text(html)

    assert text.split("\n") == ["  line one", "    line two", "", "A & B"]


def test_html_link_shown_once():
    html = '<p><a href="https://app.fluidattacks.com/orgs/kiwicorp">https://app.fluidattacks.com/orgs/kiwicorp</a> <a href="javascript:void(0)">click</a></p>'

    assert html_to_text(html) == "https://app.fluidattacks.com/orgs/kiwicorp click"


@pytest.mark.parametrize(
    ("data", "charset", "expected"),
    [
        ("Política".encode("utf-8"), "utf-8", "Política"),
        ("“Política”".encode("cp1252"), "iso-8859-1", "“Política”"),
        ("“Política”".encode("cp1252"), "windows-1252", "“Política”"),
        ("Política".encode("utf-8"), "us-ascii", "Política"),
        ("Política".encode("utf-8"), None, "Política"),
        ("Política".encode("latin-1"), None, "Política"),
        ("Política".encode("utf-8"), "x-unknown-charset", "Política"),
        ("Política".encode("latin-1"), "utf-8", "Política"),
    ],
)
def test_decode_bytes_table(data, charset, expected):
    assert decode_bytes(data, charset) == expected


def test_format_flowed_joined():
    raw = (
        b"From: ana.gomez@kiwicorp.co\nSubject: flowed\nMessage-ID: <flowed.1@mail.kiwicorp.co>\n"
        b"Content-Type: text/plain; charset=utf-8; format=flowed\n\n"
        b"The dashboard shows 7 open \nvulnerabilities but the list \nshows 4.\n\n"
        b"-- \nAna\n"
    )

    message = parse_message(raw)

    assert message.body == "The dashboard shows 7 open vulnerabilities but the list shows 4.\n\n--\nAna"


def test_format_flowed_delsp_and_stuffing():
    raw = (
        b"From: ana.gomez@kiwicorp.co\nSubject: flowed\n"
        b"Content-Type: text/plain; charset=utf-8; format=flowed; delsp=yes\n\n"
        b"kiwi \napp is the group.\n From the dashboard.\n"
    )

    assert parse_message(raw).body == "kiwiapp is the group.\nFrom the dashboard."


def test_forwarded_attachment_is_one_file():
    raw = (
        b"From: ana.gomez@kiwicorp.co\nSubject: see attached\nMessage-ID: <fwd-att.1@mail.kiwicorp.co>\n"
        b'MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="b"\n\n'
        b"--b\nContent-Type: text/plain\n\nSee the attached mail.\n"
        b"--b\nContent-Type: message/rfc822\n\n"
        b"From: luisa.fernandez@kiwicorp.co\nSubject: inner\n\nInner text.\n"
        b"--b--\n"
    )

    message = parse_message(raw)

    assert message.body == "See the attached mail."
    assert len(message.attachments) == 1
    assert message.attachments[0].filename == "attachment-1.eml"
    assert message.attachments[0].content_type == "message/rfc822"
    assert b"Subject: inner" in message.attachments[0].data


def test_empty_plain_alternative_uses_html():
    raw = (
        b"From: ana.gomez@kiwicorp.co\nSubject: html\nMessage-ID: <alt.1@mail.kiwicorp.co>\n"
        b'MIME-Version: 1.0\nContent-Type: multipart/alternative; boundary="b"\n\n'
        b"--b\nContent-Type: text/plain\n\n \n"
        b"--b\nContent-Type: text/html\n\n<p>The group kiwiapp fails.</p>\n"
        b"--b--\n"
    )

    assert parse_message(raw).body == "The group kiwiapp fails."


@pytest.mark.parametrize(
    ("raw", "body"),
    [
        (b"From: ana@kiwicorp.co\nContent-Type: multipart/mixed\n\nNo boundary here.\n", "No boundary here."),
        (
            b'From: ana@kiwicorp.co\nContent-Type: multipart/mixed; boundary="zz"\n\n--zz\nContent-Type: text/plain\n\ncut short',
            "cut short",
        ),
        (b'From: ana@kiwicorp.co\nContent-Type: text/plain; charset="utf\x00-8"\n\nhola\n', "hola"),
        (b"From: ana@kiwicorp.co\nContent-Type: text/plain; charset=x-unknown\n\n\xc3\xb1u\n", "\u00f1u"),
    ],
)
def test_malformed_body_still_read(raw, body):
    assert parse_message(raw).body == body


def test_whole_body_attachment():
    raw = b"From: ana@kiwicorp.co\nSubject: x\nContent-Type: application/pdf\nContent-Transfer-Encoding: base64\n\nJVBERi0=\n"

    message = parse_message(raw)

    assert message.body == ""
    assert [(item.filename, item.data) for item in message.attachments] == [("attachment-1.pdf", b"%PDF-")]


@pytest.mark.parametrize(
    ("raw", "name", "subject"),
    [
        ("From: José Núñez <jose.nunez@kiwicorp.co>\nSubject: Añadir usuario\n\nhola\n".encode(), "José Núñez", "Añadir usuario"),
        ("From: José Núñez <jose.nunez@kiwicorp.co>\nSubject: Añadir usuario\n\nhola\n".encode("cp1252"), "José Núñez", "Añadir usuario"),
        (b"From: =?utf-8?q?Ana_G=F3mez?= <ana.gomez@kiwicorp.co>\nSubject: =?utf-8?q?acci=F3n?=\n\nx\n", "Ana Gómez", "acción"),
        (b"From: =?utf-8?q?broken <ana.gomez@kiwicorp.co>\nSubject: =?x-unknown?q?abc?=\n\nx\n", "=?utf-8?q?broken", "abc"),
        (b"From: ana.gomez@kiwicorp.co\nSubject: =?utf-8?q?Ruta?= C:\\users\\ana\n\nx\n", "", "Ruta C:\\users\\ana"),
    ],
)
def test_eight_bit_and_invalid_headers(raw, name, subject):
    message = parse_message(raw)

    assert message.from_.name == name
    assert message.subject == subject


def test_mutated_messages_never_crash():
    seeds = [read(path.name) for path in sorted(EMAILS.glob("*.eml"))] + [demo_bytes()]
    fragments = [b"=?", b"?=", b"<", b">", b"\n", b"--", b";", b'"', b"\x00", b"\xff", b"boundary=", b"charset=", b"=?utf-8?b?"]
    generator = random.Random(20261203)

    for _ in range(400):
        data = bytearray(generator.choice(seeds))
        for _ in range(generator.randint(1, 6)):
            position = generator.randrange(len(data))
            if generator.random() < 0.5:
                data[position] = generator.randrange(256)
            else:
                data[position:position] = generator.choice(fragments)
        try:
            message = parse_message(bytes(data))
        except UsageError:
            continue
        texts = [message.subject, message.body, message.quoted, message.from_.name, *message.authentication_results]
        assert not re.search("[\ud800-\udfff]", "".join(texts))


@pytest.mark.parametrize(
    ("name", "content_type", "expected"),
    [
        ("informe.pdf", "application/pdf", "informe.pdf"),
        ("../../etc/passwd", "text/plain", "passwd"),
        ("C:\\Users\\ana\\captura de pantalla.png", "image/png", "captura_de_pantalla.png"),
        (".bashrc", "text/plain", "bashrc"),
        ("..", "application/octet-stream", "attachment-3.bin"),
        ("", "image/jpeg", "attachment-3.jpg"),
        ("año (final).xlsx", "application/vnd.ms-excel", "año_final.xlsx"),
        ("a" * 150 + ".pdf", "application/pdf", "a" * 96 + ".pdf"),
    ],
)
def test_sanitize_filename_table(name, content_type, expected):
    assert sanitize_filename(name, content_type, 3) == expected


# ---------------------------------------------------------------------------------------
# Subjects


def test_subjects_emails_exclude_requester_and_help():
    text = (
        "Hola, soy ana.gomez@kiwicorp.co. Escribo a help@fluidattacks.com porque "
        "Carlos.Ruiz@KiwiCorp.co y pedro.rios@kiwicorp.co no ven el grupo. "
        "Otra vez: carlos.ruiz@kiwicorp.co."
    )

    subjects = extract_subjects(text, exclude=["Ana.Gomez@kiwicorp.co"])

    assert subjects.users == ["carlos.ruiz@kiwicorp.co", "pedro.rios@kiwicorp.co"]


@pytest.mark.parametrize(
    ("text", "groups"),
    [
        ("No veo el grupo kiwiapp desde ayer", ["kiwiapp"]),
        ("In group kiwipay, the report fails", ["kiwipay"]),
        ("los grupos kiwiapp, kiwipay y kiwilegacy", ["kiwiapp", "kiwipay", "kiwilegacy"]),
        ("groups kiwiapp and kiwipay are affected", ["kiwiapp", "kiwipay"]),
        ('the group named "kiwiapp2" has 7 findings', ["kiwiapp2"]),
        ("Group: kiwiapp.", ["kiwiapp"]),
        ("el grupo Kiwiapp no carga", []),
        ("the group kiwi-app", []),
    ],
)
def test_subjects_groups_after_keyword(text, groups):
    assert extract_subjects(text).groups == groups


def test_subjects_from_platform_urls():
    text = (
        "Ver https://app.fluidattacks.com/orgs/kiwicorp/groups/kiwiapp/vulns y "
        "<https://app.fluidattacks.com/orgs/kiwicorp/groups/kiwipay>. "
        "Also https://git.kiwicorp.co/orgs/internal/groups/payments/ and "
        "https://git.kiwicorp.co/groups/tooling/subgroup"
    )

    subjects = extract_subjects(text)

    assert subjects.groups == ["kiwiapp", "kiwipay"]
    assert subjects.organizations == ["kiwicorp"]


def test_subjects_organization_after_keyword():
    subjects = extract_subjects("En la organización kiwicorp, y en la organization settings")

    assert subjects.organizations == ["kiwicorp"]


@pytest.mark.parametrize(
    "text",
    [
        "The group is not loading since yesterday.",
        "Our group members cannot log in.",
        "El grupo de trabajo no ve el tablero.",
        "el grupo desde ayer no carga",
        "the group shows 7 vulnerabilities",
        "groups and organizations are empty",
        "Every group has this problem, in each group the list is short.",
        "En el grupo que usamos, el grupo tiene 4 vulnerabilidades.",
        "la organización desde la que escribo",
        "the group's members see the report",
    ],
)
def test_subjects_ignore_ordinary_words(text):
    subjects = extract_subjects(text)

    assert subjects.groups == []
    assert subjects.organizations == []


def test_subjects_known_groups():
    subjects = extract_subjects("The Kiwiapp dashboard and kiwipay both fail", known_groups={"kiwiapp", "kiwipay"})

    assert subjects.groups == ["kiwiapp", "kiwipay"]


# ---------------------------------------------------------------------------------------
# Opening and threading cases


def test_demo_email_opens_expected_case(store):
    raw = demo_bytes()

    result = file_message(store, raw, received_at=dt.datetime(2026, 12, 3, 14, 20, tzinfo=UTC))
    case = result.case

    assert result.action == "opened"
    assert case.requester.email == "ana.gomez@kiwicorp.co"
    assert case.requester.name == "Ana Gómez"
    assert case.subject == "Vulnerabilidades no aparecen – grupo kiwiapp"
    assert case.language == "es"
    assert case.kind == "problem"
    assert case.profile == "sandbox"
    assert case.status == "open"
    assert case.subjects.users == ["carlos.ruiz@kiwicorp.co"]
    assert case.subjects.groups == ["kiwiapp"]
    assert case.subjects.organizations == ["kiwicorp"]
    assert case.organization == "kiwicorp"
    assert case.reported_at == "2026-12-03T14:12:00Z"
    assert "7 vulnerabilidades abiertas" in case.body
    assert case.attachments == ["attachments/tablero-kiwiapp.png"]
    assert result.saved == [f"mail/1-{DEMO_ID.strip('<>')}.eml", "attachments/tablero-kiwiapp.png"]


def test_opened_case_records_message(store):
    raw = demo_bytes()

    case = file_message(store, raw, received_at=dt.datetime(2026, 12, 3, 14, 20, tzinfo=UTC)).case
    stored = store.load(case.id)
    entry = stored.messages[0]

    assert len(stored.messages) == 1
    assert entry["message_id"] == DEMO_ID
    assert entry["in_reply_to"] is None
    assert entry["references"] == []
    assert entry["from"] == {"name": "Ana Gómez", "email": "ana.gomez@kiwicorp.co"}
    assert entry["to"] == ["help@fluidattacks.com"]
    assert entry["date"] == "2026-12-03T14:12:00Z"
    assert entry["received_at"] == "2026-12-03T14:20:00Z"
    assert entry["subject"] == "Vulnerabilidades no aparecen – grupo kiwiapp"
    assert entry["file"] == f"mail/1-{DEMO_ID.strip('<>')}.eml"
    assert entry["attachments"] == ["attachments/tablero-kiwiapp.png"]
    assert entry["dkim_spf_failed"] is False
    assert entry["sha256"] == hashlib.sha256(raw).hexdigest()
    assert [event.event for event in stored.timeline] == ["opened"]
    assert stored.timeline[0].actor == ACTOR
    assert stored.timeline[0].detail == {"source": "email", "message_id": DEMO_ID}


def test_opened_case_files_are_private(store):
    raw = demo_bytes()

    result = file_message(store, raw)
    folder = store.folder(result.case.id)
    mail_file = folder / result.saved[0]
    image_file = folder / result.saved[1]

    assert mail_file.read_bytes() == raw
    assert image_file.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert mode(mail_file) == 0o600
    assert mode(image_file) == 0o600
    assert mode(folder) == 0o700
    assert mode(folder / "mail") == 0o700
    assert mode(folder / "attachments") == 0o700
    assert mode(store.root / MESSAGE_MAP_FILE) == 0o600


def test_reply_threads_by_in_reply_to(store):
    first = file_message(store, demo_bytes()).case

    result = file_message(store, read("reply-spanish.eml"))
    case = store.load(first.id)

    assert result.action == "threaded"
    assert result.case.id == first.id
    assert store.ids() == [first.id]
    assert len(case.messages) == 2
    assert case.messages[1]["in_reply_to"] == DEMO_ID
    assert case.messages[1]["file"] == "mail/2-CAKw9b8e1d02.20261204101500.ana@mail.kiwicorp.co.eml"
    assert result.saved == ["mail/2-CAKw9b8e1d02.20261204101500.ana@mail.kiwicorp.co.eml"]
    assert (store.folder(first.id) / result.saved[0]).read_bytes() == read("reply-spanish.eml")
    assert case.subjects.users == ["carlos.ruiz@kiwicorp.co", "luisa.fernandez@kiwicorp.co"]
    assert case.status == "open"
    assert [event.event for event in case.timeline] == ["opened", "message-added"]
    assert case.timeline[-1].detail["subjects_added"] == {"users": ["luisa.fernandez@kiwicorp.co"]}
    assert "Hoy el grupo kiwiapp sigue igual" not in case.body


def test_reply_threads_by_references_only(store):
    first = file_message(store, demo_bytes()).case

    result = file_message(store, read("reply-references-only.eml"))

    assert result.action == "threaded"
    assert result.case.id == first.id
    assert store.ids() == [first.id]
    assert store.load(first.id).messages[1]["from"]["email"] == "carlos.ruiz@kiwicorp.co"


def test_reply_to_closed_case_reopens(store):
    first = file_message(store, demo_bytes()).case
    with store.edit(first.id) as case:
        case.status = "closed"
        case.resolution = "answered"
        case.record(ACTOR, "closed", resolution="answered")

    result = file_message(store, read("reply-spanish.eml"))
    case = store.load(first.id)

    assert result.action == "reopened"
    assert result.case.id == first.id
    assert case.status == "open"
    assert case.resolution is None
    assert [event.event for event in case.timeline] == ["opened", "closed", "reopened", "message-added"]
    reopened = case.timeline[2]
    assert reopened.actor == ACTOR
    assert reopened.detail["reason"] == REOPEN_REASON == "reply received by e-mail"
    assert reopened.detail["previous_resolution"] == "answered"
    assert reopened.detail["message_id"] == "<CAKw9b8e1d02.20261204101500.ana@mail.kiwicorp.co>"


def test_reply_to_waiting_case_returns_open(store):
    first = file_message(store, demo_bytes()).case
    with store.edit(first.id) as case:
        case.status = "waiting"

    result = file_message(store, read("reply-spanish.eml"))
    case = store.load(first.id)

    assert result.action == "threaded"
    assert case.status == "open"
    assert case.timeline[-2].event == "status-changed"
    assert case.timeline[-2].detail["previous"] == "waiting"


def test_duplicate_message_changes_nothing(store):
    first = file_message(store, demo_bytes()).case
    before = snapshot(store.root)

    result = file_message(store, demo_bytes())

    assert result.action == "duplicate"
    assert result.case.id == first.id
    assert result.saved == []
    assert store.ids() == [first.id]
    assert snapshot(store.root) == before


def test_duplicate_without_message_id(store):
    raw = b"From: nico.paez@kiwicorp.co\nSubject: Cannot log in\n\nI cannot log in.\n"

    first = file_message(store, raw)
    second = file_message(store, raw)
    other = file_message(store, raw + b"Still failing.\n")

    assert first.action == "opened"
    assert first.saved[0] == "mail/1-message.eml"
    assert second.action == "duplicate"
    assert second.case.id == first.case.id
    assert other.action == "opened"
    assert other.case.id != first.case.id


def test_concurrent_imports_open_one_case(store):
    raw = demo_bytes()

    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda _: file_message(store, raw), range(4)))

    assert sorted(result.action for result in results) == ["duplicate", "duplicate", "duplicate", "opened"]
    assert len(store.ids()) == 1


def test_unrelated_messages_open_separate_cases(store):
    first = file_message(store, demo_bytes())
    second = file_message(store, read("plain-ascii.eml"))

    assert first.action == "opened"
    assert second.action == "opened"
    assert first.case.id != second.case.id
    assert second.case.language == "en"
    assert second.case.kind == "question"
    assert second.case.subjects.groups == ["kiwipay"]
    assert second.case.organization is None


def test_message_map_rebuilt_when_deleted(store):
    first = file_message(store, demo_bytes()).case
    map_file = store.root / MESSAGE_MAP_FILE
    map_file.unlink()

    result = file_message(store, read("reply-spanish.eml"))
    data = json.loads(map_file.read_text())

    assert result.action == "threaded"
    assert result.case.id == first.id
    assert data["message_ids"] == {
        DEMO_ID: first.id,
        "<CAKw9b8e1d02.20261204101500.ana@mail.kiwicorp.co>": first.id,
    }
    assert mode(map_file) == 0o600


def test_message_map_rebuilt_when_damaged(store):
    first = file_message(store, demo_bytes()).case
    (store.root / MESSAGE_MAP_FILE).write_text("{not json")

    result = file_message(store, read("reply-references-only.eml"))

    assert result.action == "threaded"
    assert result.case.id == first.id


def test_message_map_drops_deleted_case(store):
    first = file_message(store, demo_bytes()).case
    shutil.rmtree(store.folder(first.id))

    result = file_message(store, read("reply-spanish.eml"))
    data = json.loads((store.root / MESSAGE_MAP_FILE).read_text())

    assert result.action == "opened"
    assert result.case.id != first.id
    assert first.id not in data["message_ids"].values()
    assert first.id not in data["cases"]


def test_message_map_follows_case_edits(store):
    first = file_message(store, demo_bytes()).case
    with store.edit(first.id) as case:
        case.messages.append({"message_id": "<CAHelp.0001.reply@fluidattacks.com>", "from": {"email": ACTOR}})

    raw = (
        b"From: ana.gomez@kiwicorp.co\nSubject: Re: answer\nMessage-ID: <late.1@mail.kiwicorp.co>\n"
        b"In-Reply-To: <CAHelp.0001.reply@fluidattacks.com>\n\nThanks, it works now.\n"
    )
    result = file_message(store, raw)

    assert result.action == "threaded"
    assert result.case.id == first.id


def test_message_map_rebuilt_from_other_version(store):
    first = file_message(store, demo_bytes()).case
    (store.root / MESSAGE_MAP_FILE).write_text(json.dumps({"version": 99, "message_ids": {}, "cases": {}}))

    result = file_message(store, read("reply-spanish.eml"))

    assert result.action == "threaded"
    assert result.case.id == first.id
    assert json.loads((store.root / MESSAGE_MAP_FILE).read_text())["version"] == 1


def test_message_map_rebuild_matches_file(store):
    first = file_message(store, demo_bytes()).case
    second = file_message(store, read("plain-ascii.eml")).case
    written = json.loads((store.root / MESSAGE_MAP_FILE).read_text())

    message_map = MessageIdMap(store)
    message_map.rebuild()

    assert message_map.message_ids == written["message_ids"]
    assert message_map.message_ids == {DEMO_ID: first.id, "<20261204154510.4821@mail.kiwicorp.co>": second.id}
    assert sorted(message_map.cases) == sorted([first.id, second.id])


def test_damaged_case_skipped_by_map(store, caplog):
    first = file_message(store, demo_bytes()).case
    damaged = store.folder("261201-zzzzzz")
    damaged.mkdir(mode=0o700)
    (damaged / "case.yaml").write_text("id: 261201-zzzzzz\nsubject: [unclosed\n")
    (store.root / MESSAGE_MAP_FILE).unlink()

    result = file_message(store, read("reply-spanish.eml"))
    data = json.loads((store.root / MESSAGE_MAP_FILE).read_text())

    assert result.action == "threaded"
    assert result.case.id == first.id
    assert "261201-zzzzzz" not in data["cases"]
    assert "case 261201-zzzzzz is left out of the message-id map" in caplog.text


def test_reply_sets_missing_organization(store):
    raw = b"From: ana.gomez@kiwicorp.co\nSubject: Access\nMessage-ID: <org.1@mail.kiwicorp.co>\n\nI cannot see the report.\n"
    first = file_message(store, raw).case
    reply = (
        b"From: ana.gomez@kiwicorp.co\nSubject: Re: Access\nMessage-ID: <org.2@mail.kiwicorp.co>\n"
        b"In-Reply-To: <org.1@mail.kiwicorp.co>\n\nIt is https://app.fluidattacks.com/orgs/kiwicorp/groups/kiwipay/analytics\n"
    )

    case = file_message(store, reply).case

    assert first.organization is None
    assert case.id == first.id
    assert case.organization == "kiwicorp"
    assert case.subjects.groups == ["kiwipay"]
    assert case.timeline[-1].detail["subjects_added"] == {"groups": ["kiwipay"], "organizations": ["kiwicorp"]}


def test_forwarded_case_uses_forwarded_text(store):
    case = file_message(store, read("forwarded.eml")).case

    assert case.subject == "No puedo ver el grupo kiwipay"
    assert case.body.startswith("Les reenvío el correo de Luisa.\n\n---------- Forwarded message")
    assert "Access denied" in case.body
    assert case.subjects.users == ["luisa.fernandez@kiwicorp.co"]
    assert case.subjects.groups == ["kiwipay"]
    assert case.kind == "problem"


def test_case_without_date_uses_received_at(store):
    received_at = dt.datetime(2026, 12, 14, 9, 30, tzinfo=UTC)

    case = file_message(store, read("no-date.eml"), received_at=received_at).case

    assert case.reported_at == "2026-12-14T09:30:00Z"
    assert case.messages[0]["date"] is None
    assert case.kind == "problem"


def test_case_records_failed_authentication(store):
    case = file_message(store, read("dkim-fail.eml")).case

    assert case.messages[0]["dkim_spf_failed"] is True
    assert case.messages[0]["authentication_failures"] == ["dkim=fail", "spf=softfail"]
    assert case.kind == "access-request"
    assert case.subjects.users == ["nico.paez@kiwicorp.co"]


def test_case_saves_every_attachment(store):
    result = file_message(store, read("mixed-attachments.eml"))
    folder = store.folder(result.case.id)

    assert result.saved[1:] == ["attachments/attachment-1.png", "attachments/informe_año_2026_final.pdf"]
    assert result.case.attachments == result.saved[1:]
    assert (folder / "attachments" / "informe_año_2026_final.pdf").read_bytes().startswith(b"%PDF-1.4")
    assert sorted(path.name for path in folder.rglob("*.pdf")) == ["informe_año_2026_final.pdf"]


def test_intake_import_stays_light():
    code = "import sys, helpctl.intake; print(sorted(m for m in ('httpx', 'gql', 'boto3', 'gitlab', 'keyring', 'yaml') if m in sys.modules))"

    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout

    assert output.strip() == "[]"

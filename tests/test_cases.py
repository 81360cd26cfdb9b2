"""The case store: atomic private writes, locking, damaged files, ids and the index."""

from __future__ import annotations

import multiprocessing
import os
import stat
import time

import pytest

from helpctl.cases.index import CaseIndex, ListFilter
from helpctl.cases.model import SCHEMA_VERSION, Case, Person
from helpctl.cases.store import ID_ALPHABET, CaseFileError, CaseNotFound, CaseStore, new_case_id
from helpctl.errors import HelpctlError, PreconditionFailed, UsageError
from helpctl.findings import Finding


def make_case(store: CaseStore, subject: str = "Cannot see vulnerabilities", **fields) -> Case:
    case = Case(id=new_case_id(), profile="sandbox", subject=subject, requester=Person(email="ana.gomez@kiwicorp.co"), **fields)
    case.record("engineer@example.com", "opened")
    return store.create(case)


@pytest.fixture()
def store(tmp_path):
    return CaseStore(tmp_path / "cases")


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_case_id_shape():
    case_id = new_case_id(now=0)

    assert case_id.startswith("700101-")
    assert len(case_id) == 13
    assert all(char in ID_ALPHABET for char in case_id[7:])


def test_ids_do_not_repeat():
    assert len({new_case_id() for _ in range(5000)}) == 5000


def test_create_is_private(store):
    case = make_case(store)
    folder = store.folder(case.id)

    assert mode(store.root) == 0o700
    assert mode(folder) == 0o700
    assert mode(folder / "case.yaml") == 0o600


def test_roundtrip_keeps_fields(store):
    case = make_case(store, body="Hola, ¿qué pasó? 😀", organization="kiwicorp")

    loaded = store.load(case.id)

    assert loaded.body == "Hola, ¿qué pasó? 😀"
    assert loaded.organization == "kiwicorp"
    assert loaded.schema_version == SCHEMA_VERSION
    assert loaded.timeline[0].event == "opened"


def test_unknown_fields_survive_a_write(store):
    case = make_case(store)
    path = store.folder(case.id) / "case.yaml"
    path.write_text(path.read_text() + "future_section:\n  kept: true\n")

    with store.edit(case.id) as edited:
        edited.record("engineer@example.com", "note")

    assert "future_section" in path.read_text()
    assert store.load(case.id).extra == {"future_section": {"kept": True}}


def test_newer_schema_refused(store):
    case = make_case(store)
    path = store.folder(case.id) / "case.yaml"
    path.write_text(path.read_text().replace(f"schema_version: {SCHEMA_VERSION}", "schema_version: 99"))

    with pytest.raises(HelpctlError) as caught:
        store.load(case.id)

    assert "newer helpctl" in caught.value.message


def test_damaged_file_reported_and_kept(store):
    case = make_case(store)
    path = store.folder(case.id) / "case.yaml"
    damaged = path.read_text().replace("subject:", "subject: [unclosed", 1)
    path.write_text(damaged)

    with pytest.raises(CaseFileError) as caught:
        with store.edit(case.id):
            pass

    assert str(path) in caught.value.message
    assert caught.value.message.split(":")[1].isdigit()
    assert path.read_text() == damaged


def test_prefix_resolves(store):
    case = make_case(store)

    assert store.resolve(case.id[:10]) == case.id
    assert store.resolve(case.id.upper()) == case.id


def test_unknown_case(store):
    with pytest.raises(CaseNotFound):
        store.load("991231-zzzzzz")


def test_ambiguous_prefix(store):
    make_case(store)
    make_case(store)

    with pytest.raises(UsageError) as caught:
        store.resolve(new_case_id()[:7])

    assert "matches 2 cases" in caught.value.message


def test_failed_edit_writes_nothing(store):
    case = make_case(store)
    before = (store.folder(case.id) / "case.yaml").read_bytes()

    with pytest.raises(RuntimeError):
        with store.edit(case.id) as edited:
            edited.subject = "changed"
            raise RuntimeError("boom")

    assert (store.folder(case.id) / "case.yaml").read_bytes() == before


def _hold_lock(root, case_id, ready, release):
    store = CaseStore(root)
    with store.locked(case_id):
        ready.set()
        release.wait(10)


def test_second_writer_waits_then_gives_up(store, monkeypatch):
    case = make_case(store)
    context = multiprocessing.get_context("fork")
    ready, release = context.Event(), context.Event()
    holder = context.Process(target=_hold_lock, args=(store.root, case.id, ready, release))
    holder.start()
    try:
        assert ready.wait(5)
        monkeypatch.setattr("helpctl.cases.store.LOCK_WAIT_SECONDS", 0.2)
        started = time.monotonic()
        with pytest.raises(PreconditionFailed) as caught:
            with store.edit(case.id):
                pass
        assert "another helpctl process" in caught.value.message
        assert time.monotonic() - started >= 0.2
    finally:
        release.set()
        holder.join(5)


def test_write_rows_streams_private_jsonl(store):
    case = make_case(store)

    ref, count = store.write_rows(case.id, "platform-membership", ({"n": n} for n in range(3)))

    path = store.folder(case.id) / ref
    assert count == 3
    assert path.read_text().splitlines() == ['{"n": 0}', '{"n": 1}', '{"n": 2}']
    assert mode(path) == 0o600
    assert mode(path.parent) == 0o700


def test_save_file_never_overwrites(store):
    case = make_case(store)

    first = store.save_file(case.id, "attachments", "screen shot.png", b"a")
    second = store.save_file(case.id, "attachments", "screen shot.png", b"b")

    assert first == "attachments/screen_shot.png"
    assert second == "attachments/screen_shot-2.png"


def test_put_finding_replaces_same_check():
    case = Case(id="x", profile="sandbox", subject="s", requester=Person(email="a@b.co"))
    first = Finding(source="platform", check="group", subject="kiwiapp", outcome="failed", summary="timed out")
    second = Finding(source="platform", check="group", subject="kiwiapp", outcome="ok", summary="active")

    assert case.put_finding(first) is None
    replaced = case.put_finding(second)

    assert replaced.summary == "timed out"
    assert [item["summary"] for item in case.findings] == ["active"]


def test_index_lists_newest_first_with_filters(store):
    older = make_case(store, subject="Invitation never arrived", organization="kiwicorp")
    newer = make_case(store, subject="Export members", organization="other")
    with store.edit(older.id) as case:
        case.created_at = "2026-01-01T00:00:00Z"
        case.status = "waiting"

    index = CaseIndex(store.root)

    assert [row["id"] for row in index.list(ListFilter())] == [newer.id, older.id]
    assert [row["id"] for row in index.list(ListFilter(status="waiting"))] == [older.id]
    assert [row["id"] for row in index.list(ListFilter(organization="KIWICORP"))] == [older.id]
    assert [row["id"] for row in index.list(ListFilter(text="invitation"))] == [older.id]
    assert [row["id"] for row in index.list(ListFilter(text="%"))] == []
    assert len(index.list(ListFilter(limit=1))) == 1


def test_index_follows_hand_edits_and_deletions(store):
    case = make_case(store)
    other = make_case(store, subject="second")
    index = CaseIndex(store.root)
    assert len(index.list(ListFilter())) == 2

    path = store.folder(case.id) / "case.yaml"
    path.write_text(path.read_text().replace("status: open", "status: waiting"))
    os.utime(store.folder(case.id), ns=(1, 1))
    for item in store.folder(other.id).iterdir():
        item.unlink()
    store.folder(other.id).rmdir()

    rows = index.list(ListFilter())
    assert [(row["id"], row["status"]) for row in rows] == [(case.id, "waiting")]


def test_index_lists_damaged_case(store):
    case = make_case(store)
    (store.folder(case.id) / "case.yaml").write_text("id: [broken\n")
    os.utime(store.folder(case.id), ns=(2, 2))

    rows = CaseIndex(store.root).list(ListFilter())

    assert rows[0]["id"] == case.id
    assert "damaged case file" in rows[0]["damaged"]


def test_index_scan_waits_for_interval_or_refresh(store, monkeypatch):
    case = make_case(store)
    index = CaseIndex(store.root)
    assert index.list(ListFilter())[0]["status"] == "open"

    path = store.folder(case.id) / "case.yaml"
    path.write_text(path.read_text().replace("status: open", "status: waiting"))
    os.utime(store.folder(case.id), ns=(3, 3))

    assert index.list(ListFilter())[0]["status"] == "open"
    assert index.list(ListFilter(refresh=True))[0]["status"] == "waiting"


def test_index_scans_again_after_interval(store, monkeypatch):
    case = make_case(store)
    index = CaseIndex(store.root)
    index.list(ListFilter())
    path = store.folder(case.id) / "case.yaml"
    path.write_text(path.read_text().replace("status: open", "status: waiting"))
    os.utime(store.folder(case.id), ns=(4, 4))

    monkeypatch.setattr("helpctl.cases.index.SCAN_INTERVAL_SECONDS", 0.0)
    assert index.list(ListFilter())[0]["status"] == "waiting"

"""Planning access changes against the platform stand-in, and the plan file."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from test_access_helpers import ENGINEER, KIWICORP, Kit, make_kit, revoke, running  # noqa: F401

from helpctl.access import plan
from helpctl.access.approval import check_requester
from helpctl.access.plan import Intent, InvalidRows, PlanFile
from helpctl.access.roles import RoleCatalog, display, label
from helpctl.errors import PreconditionFailed, UsageError


@pytest.fixture
def kit(running, tmp_path: Path) -> Kit:  # noqa: F811
    return make_kit(running, tmp_path)


def only(draft: plan.Draft) -> dict:
    assert len(draft.operations) == 1
    return draft.operations[0]


def problems(kit: Kit, intents: list[Intent]) -> list[str]:
    with pytest.raises(InvalidRows) as caught:
        kit.draft(intents)
    return [str(problem) for problem in caught.value.problems]


# ----- roles -----


@pytest.mark.parametrize(
    ("written", "level", "expected"),
    [
        ("Group Manager", "group", "USER_MANAGER"),
        ("group manager", "group", "USER_MANAGER"),
        ("user_manager", "group", "USER_MANAGER"),
        ("Vulnerability Manager", "group", "VULNERABILITY_MANAGER"),
        ("vulnerability-manager", "group", "VULNERABILITY_MANAGER"),
        ("User", "group", "USER"),
        ("Organization Manager", "organization", "USER_MANAGER"),
        ("customeradmin", "group", "USER_MANAGER"),
    ],
)
def test_role_names_resolved(kit: Kit, written: str, level: str, expected: str) -> None:
    assert kit.catalog.resolve(written, level) == expected


def test_role_renamed_enum_preferred() -> None:
    catalog = RoleCatalog({"group": ["GROUP_MANAGER", "USER"], "organization": ["ORGANIZATION_MANAGER", "USER"]})

    assert catalog.resolve("Group Manager", "group") == "GROUP_MANAGER"
    assert catalog.resolve("user_manager", "group") == "GROUP_MANAGER"
    assert catalog.resolve("Organization Manager", "organization") == "ORGANIZATION_MANAGER"


def test_role_unknown_lists_valid(kit: Kit) -> None:
    with pytest.raises(ValueError) as caught:
        kit.catalog.resolve("Admn", "organization")

    assert str(caught.value) == (
        "role 'Admn' does not exist at organization level; valid roles: Customer Manager (CUSTOMER_MANAGER), "
        "User (USER), Organization Manager (USER_MANAGER)"
    )


def test_role_display_names() -> None:
    assert display("user_manager", "group") == "Group Manager"
    assert display("USER_MANAGER", "organization") == "Organization Manager"
    assert label("vulnerability_manager") == "Vulnerability Manager (VULNERABILITY_MANAGER)"


# ----- revocations and their dangers -----


def test_revoke_records_precondition(kit: Kit) -> None:
    operation = only(kit.draft([revoke("luisa.fernandez@kiwicorp.co", "kiwipay", line=2)]))

    assert operation["action"] == "revoke"
    assert operation["line"] == 2
    assert operation["organization_id"] == KIWICORP
    assert operation["precondition"] == {"member": True, "role": "user", "invitation_state": "REGISTERED", "responsibility": "Developer"}
    assert operation["effects"] == ["removes luisa.fernandez@kiwicorp.co from group kiwipay"]
    assert operation["dangerous"] is False


def test_revoke_last_group_flags(kit: Kit) -> None:
    operation = only(kit.draft([revoke("pedro.rios@kiwicorp.co", "kiwipay")]))

    assert operation["flags"] == ["leaves_organization", "leaves_platform"]
    assert operation["dangerous"] is True
    assert "the platform also removes them from the organization" in operation["effects"][1]
    assert "deletes their account" in operation["effects"][2]


def test_revoke_last_manager_flag(kit: Kit) -> None:
    operation = only(kit.draft([revoke("ana.gomez@kiwicorp.co", "kiwipay")]))

    assert "last_group_manager" in operation["flags"]
    assert "ana.gomez@kiwicorp.co is the last Group Manager of kiwipay besides the operator" in operation["effects"]


def test_second_manager_revoked_flagged(kit: Kit) -> None:
    draft = kit.draft([revoke("jorge.mesa@kiwicorp.co", "kiwiapp"), revoke("ana.gomez@kiwicorp.co", "kiwiapp")])
    flags = {operation["email"]: operation["flags"] for operation in draft.operations}

    assert flags["ana.gomez@kiwicorp.co"] == []
    assert "last_group_manager" in flags["jorge.mesa@kiwicorp.co"]


def test_revoke_operator_flagged(kit: Kit) -> None:
    operation = only(kit.draft([revoke(ENGINEER, "kiwipay")]))

    assert "operator_self" in operation["flags"]


def test_revoke_non_member_skipped(kit: Kit) -> None:
    draft = kit.draft([revoke("pedro.rios@kiwicorp.co", "kiwiapp", line=4)])

    assert draft.operations == []
    assert draft.skipped == [
        {"line": 4, "action": "revoke", "scope": "group", "email": "pedro.rios@kiwicorp.co", "target": "kiwiapp",
         "reason": "pedro.rios@kiwicorp.co is not a member of group kiwiapp"}
    ]


def test_all_groups_expanded(kit: Kit) -> None:
    service = kit.service
    person = next(
        email for email in service.story.organizations["bigcorp"].members
        if email.endswith(".example") and len([group for group in service.story.groups_of(email)]) == 3
    )
    draft = kit.draft([Intent("revoke", "group", person, organization="bigcorp", all_groups=True, line=7)])

    assert len(draft.operations) == 3
    assert all(operation["line"] == 7 for operation in draft.operations)
    leaving = [operation for operation in draft.operations if "leaves_organization" in operation["flags"]]
    assert len(leaving) == 1
    assert leaving[0] is draft.operations[-1]


def test_all_groups_without_groups_skipped(kit: Kit) -> None:
    draft = kit.draft([Intent("revoke", "group", "nobody@bigcorp.example", organization="bigcorp", all_groups=True)])

    assert draft.operations == []
    assert draft.skipped[0]["reason"] == "nobody@bigcorp.example has no group in organization bigcorp"


def test_organization_revoke_cascade(kit: Kit) -> None:
    operation = only(kit.draft([Intent("revoke", "organization", "luisa.fernandez@kiwicorp.co", organization="kiwicorp")]))

    assert operation["scope"] == "organization"
    assert operation["effects"][0] == "removes luisa.fernandez@kiwicorp.co from organization kiwicorp and from its groups kiwiapp, kiwipay"
    assert operation["cascade"] == [
        {"group": "kiwiapp", "role": "user", "responsibility": "Developer"},
        {"group": "kiwipay", "role": "user", "responsibility": "Developer"},
    ]
    assert "leaves_organization" in operation["flags"]


# ----- grants and role changes -----


def test_grant_new_invitation(kit: Kit) -> None:
    operation = only(kit.draft([Intent("grant", "group", "new.dev@bigcorp.example", group="bigcorp002", role="User", responsibility="Developer")]))

    assert operation["action"] == "grant"
    assert operation["role"] == "USER"
    assert operation["precondition"]["member"] is False
    assert operation["flags"] == ["new_invitation"]
    assert operation["dangerous"] is False
    assert "also joins organization bigcorp" in operation["effects"][1]


def test_grant_existing_becomes_role_change(kit: Kit) -> None:
    operation = only(kit.draft([Intent("grant", "group", "luisa.fernandez@kiwicorp.co", group="kiwiapp", role="Group Manager")]))

    assert operation["action"] == "set-role"
    assert operation["role"] == "USER_MANAGER"
    assert operation["responsibility"] == "Developer"
    assert operation["notes"] == ["already a member as User: planned as a role change"]


def test_grant_same_role_skipped(kit: Kit) -> None:
    draft = kit.draft([
        Intent("grant", "group", "luisa.fernandez@kiwicorp.co", group="kiwiapp", role="User"),
        Intent("grant", "group", "carlos.ruiz@kiwicorp.co", group="kiwiapp", role="User"),
    ])

    assert draft.operations == []
    assert [item["reason"] for item in draft.skipped] == [
        "luisa.fernandez@kiwicorp.co already holds User in group kiwiapp",
        "carlos.ruiz@kiwicorp.co already invited (pending) User in group kiwiapp",
    ]


def test_resend_pending_invitation(kit: Kit) -> None:
    operation = only(kit.draft([Intent("grant", "group", "carlos.ruiz@kiwicorp.co", group="kiwiapp", role="User", resend=True)]))

    assert operation["action"] == "grant"
    assert operation["resend"] is True
    assert operation["effects"][0] == "sends carlos.ruiz@kiwicorp.co a new invitation to group kiwiapp as User"


def test_set_role_demoting_last_manager(kit: Kit) -> None:
    operation = only(kit.draft([Intent("set-role", "group", "ana.gomez@kiwicorp.co", group="kiwipay", role="User")]))

    assert operation["effects"][0] == "changes ana.gomez@kiwicorp.co's role in group kiwipay from Group Manager to User"
    assert "last_group_manager" in operation["flags"]


# ----- problems, all at once -----


def test_problems_listed_by_line(kit: Kit) -> None:
    found = problems(kit, [
        Intent("set-role", "group", "luisa.fernandez@kiwicorp.co", group="kiwiapp", role="Admn", line=3),
        Intent("revoke", "group", "ana.gomez@kiwicorp.co", group="nosuchgroup", line=4),
        Intent("set-role", "group", "pedro.rios@kiwicorp.co", group="kiwiapp", role="User", line=5),
        Intent("grant", "group", "new.dev@kiwicorp.co", group="kiwipay", line=6),
        Intent("revoke", "group", "nico.paez@kiwicorp.co", group="kiwilegacy", line=7),
    ])

    assert found[0].startswith("line 3: role 'Admn' does not exist at group level; valid roles: ")
    assert found[1:] == [
        "line 4: group 'nosuchgroup' not found, or the token has no access to it",
        "line 5: pedro.rios@kiwicorp.co is not a member of group kiwiapp, so the role cannot change (use grant)",
        "line 6: a role is required to grant new.dev@kiwicorp.co (add a role column or --role)",
        "line 7: cannot read the members of group kiwilegacy: Access denied (the group's plan may lack the service, or your role cannot list members)",
    ]


def test_conflicting_operations_reported(kit: Kit) -> None:
    found = problems(kit, [
        Intent("grant", "group", "luisa.fernandez@kiwicorp.co", group="kiwiapp", role="Group Manager", line=2),
        Intent("grant", "group", "luisa.fernandez@kiwicorp.co", group="kiwiapp", role="Vulnerability Manager", line=3),
    ])

    assert found == ["line 3: luisa.fernandez@kiwicorp.co in group kiwiapp conflicts with line 2"]


def test_group_outside_organization(kit: Kit) -> None:
    found = problems(kit, [Intent("revoke", "group", "luisa.fernandez@kiwicorp.co", group="kiwiapp", organization="bigcorp", line=2)])

    assert found == ["line 2: group kiwiapp belongs to organization kiwicorp, not bigcorp"]


def test_repeated_operation_kept_once(kit: Kit) -> None:
    draft = kit.draft([revoke("luisa.fernandez@kiwicorp.co", "kiwipay", 2), revoke("luisa.fernandez@kiwicorp.co", "kiwipay", 5)])

    assert len(draft.operations) == 1


# ----- header, requester and policy -----


def test_header_summary_and_policy(kit: Kit) -> None:
    kit.settings.second_approver_above = 1
    draft = kit.draft([revoke("pedro.rios@kiwicorp.co", "kiwipay"), Intent("set-role", "group", "luisa.fernandez@kiwicorp.co", group="kiwiapp", role="Group Manager")])
    summary = draft.header["summary"]

    assert draft.header["operator"] == {"email": ENGINEER, "name": "Sandra Soporte"}
    assert summary["operations"] == 2
    assert summary["dangerous"] == 1
    assert summary["roles"] == ["USER_MANAGER"]
    assert summary["group_organizations"] == {"kiwiapp": "kiwicorp", "kiwipay": "kiwicorp"}
    assert summary["organization_ids"] == {"kiwicorp": KIWICORP}
    assert draft.header["policy"]["second_approver_reasons"] == [
        "it grants or sets USER_MANAGER (access.second_approver_roles)",
        "it holds 2 operations, more than 1 (access.second_approver_above)",
    ]
    assert [operation["index"] for operation in draft.operations] == [0, 1]


def test_requester_manager_verified(kit: Kit) -> None:
    draft = kit.draft([revoke("pedro.rios@kiwicorp.co", "kiwipay")], request={"requester": "ana.gomez@kiwicorp.co"})
    check = draft.header["request"]["requester_check"]

    assert check["verified"] is True
    assert check["holds"] == {"organization kiwicorp": "user_manager (REGISTERED)"}
    assert draft.header["warnings"] == []


def test_requester_not_manager_flagged(kit: Kit) -> None:
    draft = kit.draft([revoke("pedro.rios@kiwicorp.co", "kiwipay")], request={"requester": "luisa.fernandez@kiwicorp.co"})
    check = draft.header["request"]["requester_check"]

    assert check["verified"] is False
    assert check["missing"] == ["group kiwipay"]
    assert draft.header["warnings"] == ["requester not verified as a manager: luisa.fernandez@kiwicorp.co is not a manager of group kiwipay"]


def test_requester_group_manager_verified(kit: Kit) -> None:
    bigcorp = kit.service.story.organizations["bigcorp"].id
    summary = {"organizations": ["bigcorp"], "organization_ids": {"bigcorp": bigcorp}, "group_organizations": {"bigcorp003": "bigcorp"}}
    manager = next(email for email, member in kit.service.story.groups["bigcorp003"].members.items()
                   if member.role == "user_manager" and email.endswith(".example"))

    check = check_requester(kit.reader, manager, summary)

    assert check["verified"] is True
    assert check["holds"]["group bigcorp003"] == "user_manager (REGISTERED)"


# ----- the plan file -----


def test_plan_file_round_trip(kit: Kit, tmp_path: Path) -> None:
    path = kit.write([revoke("pedro.rios@kiwicorp.co", "kiwipay"), revoke("luisa.fernandez@kiwicorp.co", "kiwipay")])
    loaded = PlanFile(path)

    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert json.loads(path.read_text())["format"] == "helpctl-access-plan"
    assert [operation["email"] for operation in loaded.operations()] == ["luisa.fernandez@kiwicorp.co", "pedro.rios@kiwicorp.co"]
    assert loaded.computed_hash() == loaded.stored_hash
    assert loaded.approval is None
    assert loaded.check_unchanged() == loaded.stored_hash


def test_plan_edit_detected(kit: Kit) -> None:
    path = kit.write([revoke("pedro.rios@kiwicorp.co", "kiwipay")])
    path.write_text(path.read_text().replace("pedro.rios", "sofia.lopez"))

    with pytest.raises(PreconditionFailed) as caught:
        PlanFile(path).check_unchanged()

    assert "was edited" in caught.value.message


def test_reformatted_plan_readable(kit: Kit) -> None:
    path = kit.write([revoke("pedro.rios@kiwicorp.co", "kiwipay")])
    stored = PlanFile(path).stored_hash
    path.write_text(json.dumps(json.loads(path.read_text()), indent=4, sort_keys=True))

    reformatted = PlanFile(path)

    assert reformatted.computed_hash() == stored
    assert [operation["email"] for operation in reformatted.operations()] == ["pedro.rios@kiwicorp.co"]


def test_empty_plan_sections(tmp_path: Path) -> None:
    path = tmp_path / "empty.json"
    content_hash = plan.write_plan(path, {"id": "plan-x", "summary": {}}, [], [])
    loaded = PlanFile(path)

    assert list(loaded.operations()) == []
    assert list(loaded.skipped()) == []
    assert loaded.computed_hash() == content_hash


def test_approval_keeps_hash(kit: Kit) -> None:
    path = kit.write([revoke("pedro.rios@kiwicorp.co", "kiwipay")])
    loaded = PlanFile(path)

    plan.set_approval(loaded, {"by": "Jorge Mesa"})
    approved = PlanFile(path)

    assert approved.approval == {"by": "Jorge Mesa"}
    assert approved.stored_hash == loaded.stored_hash
    assert approved.computed_hash() == loaded.stored_hash


def test_newer_plan_version_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.json"
    path.write_text(json.dumps({"format": "helpctl-access-plan", "version": 99, "header": {}}))

    with pytest.raises(PreconditionFailed) as caught:
        PlanFile(path)

    assert "newer than this helpctl reads" in caught.value.message


def test_missing_plan_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError):
        PlanFile(tmp_path / "none.json")

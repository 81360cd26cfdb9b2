"""Filing: render a classified case as a GitLab issue and create it exactly once.

`build_request` renders the issue from the case, its findings and the route, with every
text redacted (`helpctl.redact`) and the description cut per section to fit
`gitlab.description_limit`. The findings that the fired classification rules rest on come
first with their exact requests, and the other findings share one table without them. The
findings' raw-row file names (`raw_ref`) are left out, because they contain addresses.

`file_issue` checks the project, labels and assignee before writing anything, and is
idempotent: the description ends with the hidden marker line
`<!-- helpctl-case: <case id> -->`, and an issue that carries it is returned instead of
filing a second one, both before the create request and after one that failed in a way
that leaves its effect unknown (dropped connection, timeout, 5xx).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from typing import TYPE_CHECKING, Any

from helpctl.cases.model import Case
from helpctl.config.profiles import normalise_labels
from helpctl.config.settings import Profile
from helpctl.errors import HelpctlError, NotFound, PreconditionFailed, RateLimited, ServiceError, UsageError
from helpctl.findings import Finding
from helpctl.redact import Redactor
from helpctl.routing import ROUTED_LABELS, Route

if TYPE_CHECKING:
    from helpctl.clients.gitlab import GitlabClient

logger = logging.getLogger(__name__)

MARKER_PREFIX = "helpctl-case:"
ELLIPSIS = "…"


def case_marker(case_id: str) -> str:
    """Return the hidden line that ties an issue to its case (the idempotency key)."""
    return f"<!-- {MARKER_PREFIX} {case_id} -->"


@dataclasses.dataclass
class IssueRequest:
    """Exactly what filing sends to GitLab, plus what rendering changed."""

    case_id: str
    label: str
    title: str
    description: str
    labels: list[str]
    assignee: str
    issue_type: str
    confidential: bool
    marker: str
    route_reason: str = ""
    redactions: dict[str, int] = dataclasses.field(default_factory=dict)
    truncated: list[str] = dataclasses.field(default_factory=list)

    def payload(self, assignee_id: int | None) -> dict[str, Any]:
        """Build the create-issue body. Labels stay a list, so no label is split or spelled out."""
        data: dict[str, Any] = {
            "title": self.title,
            "description": self.description,
            "labels": list(self.labels),
            "confidential": self.confidential,
            "issue_type": self.issue_type,
        }
        if assignee_id is not None:
            data["assignee_ids"] = [assignee_id]
        return data

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class FilingResult:
    iid: int | None
    url: str | None
    labels: list[str]
    assignee: str | None
    created: bool
    request: IssueRequest
    dry_run: bool = False
    state: str | None = None
    labels_to_create: list[str] = dataclasses.field(default_factory=list)
    warnings: list[str] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ----- building the request -----


def build_request(
    case: Case,
    profile: Profile,
    classification_label: str | None,
    route: Route,
    findings: list[Finding],
    *,
    allow_other_profile: bool = False,
) -> IssueRequest:
    """Render the issue for `case`; raises PreconditionFailed for a case that is not filed."""
    label = _check_label(case, classification_label)
    if profile.name and case.profile != profile.name and not allow_other_profile:
        raise PreconditionFailed(
            f"case {case.id} was opened under profile {case.profile!r}, not {profile.name!r}",
            hint=f"file it with --profile {case.profile}, or confirm that the evidence may go to {profile.gitlab.url}",
        )

    labels = normalise_labels(profile.labels.get(label), f"{profile.source or 'profile'}: labels.{label}")
    if not labels:
        raise PreconditionFailed(
            f"the profile gives no GitLab labels for a {label}",
            hint=f"fill labels.{label} in profile {profile.name or '(unnamed)'}",
        )

    redactor = Redactor(case)
    title = _title(case, profile, route, redactor)
    blocks = _render_blocks(case, label, route, findings, redactor)
    marker = case_marker(case.id)
    description, truncated = _fit(blocks, profile.gitlab.description_limit, marker)

    return IssueRequest(
        case_id=case.id,
        label=label,
        title=title,
        description=description,
        labels=labels,
        assignee=route.assignee,
        issue_type="incident" if label == "incident" else "issue",
        confidential=profile.gitlab.confidential,
        marker=marker,
        route_reason=redactor.redact(route.reason),
        redactions=redactor.report(),
        truncated=truncated,
    )


def _check_label(case: Case, label: str | None) -> str:
    if not label:
        raise PreconditionFailed(
            f"case {case.id} is not classified, so there is nothing to file",
            hint=f"run 'helpctl classify {case.id}' first",
        )
    if label == "answered":
        raise PreconditionFailed(
            f"case {case.id} is answered by its evidence; answered cases get no issue",
            hint=f"close it with 'helpctl case close {case.id} --resolution \"<what answered it>\"'",
        )
    if label not in ROUTED_LABELS:
        raise UsageError(f"unknown label {label!r}; expected one of {', '.join(ROUTED_LABELS)}")
    return label


def _title(case: Case, profile: Profile, route: Route, redactor: Redactor) -> str:
    """Build `[<product>] <summary>` within gitlab.title_limit, cut on a word with an ellipsis."""
    component = profile.routing.components.get(route.component or "")
    product = (component.product if component and component.product else None) or profile.gitlab.product
    summary = " ".join(redactor.redact(case.subject).split()) or f"Help Channel case {case.id}"
    title = f"[{product}] {summary}"

    limit = profile.gitlab.title_limit
    if len(title) <= limit:
        return title
    cut = title[: limit - len(ELLIPSIS)]
    space = cut.rfind(" ")
    if space > len(product) + 3:
        cut = cut[:space]
    return cut.rstrip(" ,.;:-") + ELLIPSIS


# ----- rendering -----

# Probes name the ends of a finding's time window differently: the logs, errors, usage and
# sessions probes write `start`/`end`, the mail probe `from`/`to`, and the findings
# format describes `since`/`until`. The platform probe's checks have no window.
WINDOW_ENDS = (("start", "end"), ("since", "until"), ("from", "to"))
# A signature is cut from the requester's text only when at most this many lines follow
# its separator, so that a `--` line in the middle of a long report is kept.
MAX_SIGNATURE_LINES = 8


@dataclasses.dataclass
class _Block:
    """Lines of the description; a cuttable block may lose lines to fit the size limit."""

    lines: list[str]
    name: str = ""
    cuttable: bool = False
    fence: str = ""  # the fence's info string ("text", "graphql", "json") when fenced
    where_full: str = ""
    # Markdown reads a line right after table rows as one more row, so a cut table needs a
    # blank line before its truncation note.
    note_apart: bool = False

    def render(self, kept: int | None = None, partial: str = "") -> list[str]:
        lines = self.lines if kept is None else self.lines[:kept]
        if partial:
            lines = [*lines, partial + ELLIPSIS]
        if self.fence:
            fence = "`" * max(3, _longest_backtick_run(self.lines) + 1)
            lines = [fence + self.fence, *lines, fence]
        if kept is not None:
            gap = [""] if self.note_apart else []
            lines = [*lines, *gap, self.truncation_note(kept)]
        return lines

    def truncation_note(self, kept: int) -> str:
        note = f"[truncated: {kept} of {len(self.lines)} lines]"
        return f"{note} {self.where_full}" if self.where_full else note


def _render_blocks(case: Case, label: str, route: Route, findings: list[Finding], redactor: Redactor) -> list[_Block]:
    rules_by_key = _rules_by_finding(case)
    behind = _findings_behind_rules(findings, rules_by_key)

    blocks = _report_blocks(case)
    blocks += _reproduce_blocks(case, behind, rules_by_key)
    blocks += _evidence_blocks(case, findings, behind, rules_by_key)
    blocks += _expected_blocks(case, label)
    blocks += _routing_blocks(route)

    for block in blocks:
        text = redactor.redact("\n".join(block.lines))
        block.lines = [_defuse_marker(line) for line in text.split("\n")]
    return blocks


def _rules_by_finding(case: Case) -> dict[str, list[str]]:
    """Map each finding key that a fired rule rests on to those rules, named with their labels, in the rules' order."""
    rules_by_key: dict[str, list[str]] = {}
    for rule in (case.classification or {}).get("rules") or []:
        for key in rule.get("findings") or []:
            rules_by_key.setdefault(key, []).append(f"`{rule.get('name')}` ({rule.get('label')})")
    return rules_by_key


def _findings_behind_rules(findings: list[Finding], rules_by_key: dict[str, list[str]]) -> list[Finding]:
    """Select the findings that fired rules rest on, in the order the rules name them."""
    order = {key: position for position, key in enumerate(rules_by_key)}
    behind = [finding for finding in findings if finding.key in order]
    return sorted(behind, key=lambda finding: order[finding.key])


def _report_blocks(case: Case) -> list[_Block]:
    facts = [f"- **Case:** `{case.id}` (reported {case.reported_at or case.created_at})"]
    if case.organization:
        facts.append(f"- **Organization:** {case.organization}")
    if case.subjects.groups:
        facts.append(f"- **Groups:** {', '.join(case.subjects.groups)}")
    if case.subjects.users:
        facts.append(f"- **Users concerned:** {', '.join(case.subjects.users)}")
    return [_Block(["## What the requester reported", "", f"**Subject:** {case.subject}", "", *facts, ""])]


def _reproduce_blocks(case: Case, behind: list[Finding], rules_by_key: dict[str, list[str]]) -> list[_Block]:
    """Render the requester's own account, then steps that end in the findings the rules rest on."""
    body, signature_cut = _without_signature(case.body.strip())
    body = body or "(the request had no text besides its subject)"
    quoted = [f"> {line}" if line.strip() else ">" for line in body.splitlines()]
    intro = "What the requester did and saw, in their words" + (" (signature left out):" if signature_cut else ":")

    steps = []
    if case.subjects.groups:
        where = f" of organization {case.organization}" if case.organization else ""
        steps.append(f"Open group {', '.join(case.subjects.groups)}{where} with a user who has access to it.")
    steps.append("Do what the requester describes above and compare the result with what they saw.")
    lines = [f"{number}. {step}" for number, step in enumerate(steps, start=1)]
    if behind:
        lines.append(
            f"{len(steps) + 1}. Check the evidence that the classification rests on. "
            "Each finding's exact request is under Evidence:"
        )
        lines += [
            f"   - {finding.source} · {finding.check} · {finding.subject}, "
            f"behind {', '.join(rules_by_key[finding.key])}: {finding.summary}"
            for finding in behind
        ]
    else:
        lines.append(f"{len(steps) + 1}. {_no_rule_evidence(case)}")

    return [
        _Block(["## How to reproduce", "", intro, ""]),
        _Block(quoted, name="requester's report", cuttable=True, where_full=f"The full text is kept in case {case.id}."),
        _Block([""]),
        _Block(lines, name="steps to reproduce", cuttable=True),
        _Block([""]),
    ]


def _without_signature(body: str) -> tuple[str, bool]:
    """Drop an e-mail signature, the lines after a final `--` or `-- ` line, and return whether one was dropped."""
    lines = body.splitlines()
    first_candidate = max(0, len(lines) - MAX_SIGNATURE_LINES - 1)
    for index in range(len(lines) - 1, first_candidate - 1, -1):
        if lines[index].rstrip() == "--":
            text = "\n".join(lines[:index]).rstrip()
            return (text, True) if text else (body, False)
    return body, False


def _no_rule_evidence(case: Case) -> str:
    text = "No classification rule rests on a probe finding, so only the requester's account shows the problem."
    override = (case.classification or {}).get("override") or {}
    if override.get("reason"):
        text += f" The label was set by hand: {override['reason']}"
    return text


def _evidence_blocks(
    case: Case, findings: list[Finding], behind: list[Finding], rules_by_key: dict[str, list[str]]
) -> list[_Block]:
    blocks = [_Block(["## Evidence", ""])]
    if not findings:
        blocks.append(_Block(["No probe evidence was gathered for this case.", ""]))
        return blocks

    # Raw file names often contain the addresses they are about, so none is printed.
    if any(finding.raw_ref for finding in findings):
        blocks.append(_Block([f"The raw rows that the probes read are kept in the folder of case `{case.id}`, not in this issue.", ""]))
    for finding in behind:
        blocks += _finding_blocks(case, finding, rules_by_key[finding.key])

    others = [finding for finding in findings if finding.key not in rules_by_key]
    if others:
        blocks += _other_findings_blocks(case, others, after_rule_findings=bool(behind))
    return blocks


def _finding_blocks(case: Case, finding: Finding, rules: list[str]) -> list[_Block]:
    facts = [
        f"### {finding.source} · {finding.check} · {finding.subject}",
        "",
        f"- **Rules:** {', '.join(rules)}",
        f"- **Outcome:** {finding.outcome}" + (f" ({finding.reason})" if finding.reason else ""),
        f"- **Summary:** {finding.summary}",
        f"- **Fetched at:** {finding.fetched_at}",
    ]
    window = _window_text(finding.window)
    if window:
        facts.append(f"- **Time window (UTC):** {window}")
    if finding.signals:
        facts.append("- **Signals:** " + ", ".join(f"`{name}` = {_scalar(value)}" for name, value in finding.signals.items()))
    if finding.component:
        facts.append(f"- **Component:** {finding.component}")

    blocks = [_Block(facts + [""])]
    if finding.request:
        language = "graphql" if finding.source == "platform" else "text"
        where_full = f"The full request is stored in case {case.id} (finding {finding.key})."
        blocks += _request_blocks(finding.request, finding.key, language, where_full)
    else:
        blocks.append(_Block(["The request was not recorded."]))
    blocks.append(_Block([""]))
    return blocks


def _request_blocks(request: dict[str, Any], name: str, language: str, where_full: str) -> list[_Block]:
    """Render a request's query texts as fenced code and its other fields as JSON.

    Query texts are the `query` field, fields named `*_query`, and the `query` of each
    item of a `queries` list (the platform probe records one item per GraphQL operation).
    """
    rest = dict(request)
    blocks = []
    for field in [field for field in request if field == "query" or field.endswith("_query")]:
        text = rest[field]
        if not isinstance(text, str) or not text.strip():
            continue
        del rest[field]
        if field != "query":
            blocks.append(_Block([f"`{field}`:"]))
        blocks.append(_Block(text.strip("\n").split("\n"), f"{name} {field}", True, language, where_full))

    queries = rest.get("queries")
    if isinstance(queries, list) and queries and all(isinstance(item, dict) for item in queries):
        del rest["queries"]
        for number, item in enumerate(queries, start=1):
            blocks += _request_blocks(item, f"{name} {number}", language, where_full)

    if rest:
        dumped = json.dumps(rest, indent=2, sort_keys=True, ensure_ascii=False, default=str)
        blocks.append(_Block(dumped.split("\n"), f"{name} request", True, "json", where_full))
    return blocks


def _window_text(window: dict[str, str] | None) -> str | None:
    """Return a finding's window as `<start> to <end>` from whichever pair of keys its probe wrote, or None."""
    if not window:
        return None
    for first, last in WINDOW_ENDS:
        start, end = window.get(first), window.get(last)
        if start and end:
            text = f"{start} to {end}"
        elif start or end:
            text = f"from {start}" if start else f"until {end}"
        else:
            continue
        requested = window.get("requested_from")
        if requested:
            text += f" (requested from {requested}, but the earlier part is past the service's retention)"
        return text
    return None


def _other_findings_blocks(case: Case, others: list[Finding], *, after_rule_findings: bool) -> list[_Block]:
    if after_rule_findings:
        heading = "### Other findings"
        intro = "No classification rule rests on these checks. Their requests are kept in the case."
    else:
        heading = "### Findings"
        intro = "No classification rule rests on any check. The requests are kept in the case."
    header = [heading, "", intro, "", "| Source | Check | Subject | Outcome | Summary |", "| --- | --- | --- | --- | --- |"]

    rows = []
    for finding in others:
        outcome = finding.outcome + (f" ({finding.reason})" if finding.reason else "")
        cells = [finding.source, finding.check, finding.subject, outcome, finding.summary]
        rows.append("| " + " | ".join(_table_cell(cell) for cell in cells) + " |")
    return [
        _Block(header),
        _Block(rows, "other findings", True, where_full=f"The other findings are stored in case {case.id}.", note_apart=True),
        _Block([""]),
    ]


def _table_cell(text: str) -> str:
    """Put text on one line and escape the pipes that would end a Markdown table cell."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _expected_blocks(case: Case, label: str) -> list[_Block]:
    lines = ["## Expected behaviour", ""]
    expected = case.extra.get("expected")
    if isinstance(expected, str) and expected.strip():
        lines += [expected.strip(), ""]

    rules = [rule for rule in (case.classification or {}).get("rules") or [] if rule.get("label") == label]
    if rules:
        lines.append(f"None of these conditions should hold; they are the rules that classified the case as {label}:")
        lines += [f"- **{rule.get('name')}**: {rule.get('description') or 'no description'}" for rule in rules]
    elif not expected:
        lines.append("The platform should behave as the requester expected in the report above.")
    return [_Block(lines + [""])]


def _routing_blocks(route: Route) -> list[_Block]:
    lines = [
        "## Routing",
        "",
        f"Classified as **{route.label}** and assigned to @{route.assignee}: {route.reason}.",
        "",
        "Steps tried:",
    ]
    lines += [f"- {step}" for step in route.chain]
    return [_Block(lines + [""])]


def _scalar(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value


def _longest_backtick_run(lines: list[str]) -> int:
    return max((len(run) for line in lines for run in re.findall(r"`+", line)), default=0)


def _defuse_marker(line: str) -> str:
    """Keep case text from forging a marker line that would tie this issue to another case."""
    if MARKER_PREFIX in line and "<!--" in line:
        return line.replace("<!--", "&lt;!--")
    return line


# ----- fitting the size limit -----


def _fit(blocks: list[_Block], limit: int, marker: str) -> tuple[str, list[str]]:
    """Join the blocks under `limit` characters, cutting cuttable blocks evenly by lines.

    Returns the description (ending with the marker line) and the names of the cut blocks.
    """
    footer = ["---", "Filed by helpctl. Redacted evidence; the full records stay with the case.", marker]
    whole = _join([line for block in blocks for line in block.render()] + footer)
    if len(whole) <= limit:
        return whole, []

    cuttable = [block for block in blocks if block.cuttable]
    # A cut block keeps its fences and gains a note whose line count has at most as
    # many digits as its total.
    fixed = sum(_size(block.render()) for block in blocks if not block.cuttable)
    fixed += sum(_size(block.render(0)) + len(str(len(block.lines))) for block in cuttable)
    budget = limit - fixed - _size(footer) - 1
    if budget < 0:
        raise PreconditionFailed(
            f"the issue's fixed sections alone exceed gitlab.description_limit ({limit} characters)",
            hint="raise gitlab.description_limit in the profile (GitLab accepts up to 1048576 characters)",
        )

    sizes = [_size(block.lines) for block in cuttable]
    allowances = dict(zip(map(id, cuttable), _share(sizes, budget)))
    lines: list[str] = []
    truncated = []
    for block in blocks:
        if not block.cuttable or _size(block.lines) <= allowances[id(block)]:
            lines += block.render()
            continue
        kept, partial = _cut(block.lines, allowances[id(block)])
        lines += block.render(kept, partial)
        truncated.append(block.name)

    description = _join(lines + footer)
    if len(description) > limit:  # a guard: the budget arithmetic above should prevent it
        raise PreconditionFailed(f"the issue description could not be cut under {limit} characters")
    return description, truncated


def _share(sizes: list[int], budget: int) -> list[int]:
    """Split `budget` so small blocks keep everything and large ones share the rest evenly."""
    allowances = [0] * len(sizes)
    remaining = budget
    order = sorted(range(len(sizes)), key=lambda index: sizes[index])
    for position, index in enumerate(order):
        share = remaining // (len(sizes) - position)
        allowances[index] = min(sizes[index], share)
        remaining -= allowances[index]
    return allowances


def _cut(lines: list[str], allowance: int) -> tuple[int, str]:
    """Return how many whole lines fit in `allowance`, and a cut prefix of the next line if none do."""
    used = 0
    for index, line in enumerate(lines):
        if used + len(line) + 1 > allowance:
            room = allowance - used - 1 - len(ELLIPSIS)
            partial = line[:room] if index == 0 and room > 0 else ""
            return index, partial
        used += len(line) + 1
    return len(lines), ""


def _size(lines: list[str]) -> int:
    return sum(len(line) + 1 for line in lines)


def _join(lines: list[str]) -> str:
    return "\n".join(lines)


# ----- filing -----


def file_issue(
    request: IssueRequest,
    client: GitlabClient | None,
    *,
    allow_new_labels: bool = False,
    dry_run: bool = False,
) -> FilingResult:
    """File `request` once: return the existing issue with its marker, or create one.

    Nothing is written until the project, every label (unless `allow_new_labels`) and
    the assignee are confirmed to exist; otherwise PreconditionFailed names what is
    missing. `dry_run` reads for validation when a client is given and writes nothing.
    """
    if client is None:
        if not dry_run:
            raise UsageError("filing an issue needs a GitLab client; pass dry_run=True to render only")
        return FilingResult(None, None, request.labels, request.assignee, False, request, dry_run=True)

    _check_project(client)
    existing = client.find_issue_by_marker(request.marker)
    if existing is not None:
        logger.info("case %s already has issue #%s; not filing again", request.case_id, existing["iid"])
        return _result(existing, request, created=False, dry_run=dry_run)

    missing_labels = _check_labels(request, client, allow_new_labels)
    assignee = _check_assignee(request, client)
    if dry_run:
        return FilingResult(
            None, None, request.labels, request.assignee, False, request, dry_run=True, labels_to_create=missing_labels
        )

    for name in missing_labels:
        client.create_label(name)
        logger.info("created GitLab label %r for case %s", name, request.case_id)

    issue, warnings = _create_once(request, client, assignee["id"])
    result = _result(issue, request, created=True, dry_run=False)
    result.warnings += warnings
    if result.assignee != request.assignee:
        result.warnings.append(f"GitLab did not assign @{request.assignee}; check that the user is a member of the project")
    for warning in result.warnings:
        logger.warning("case %s: %s", request.case_id, warning)
    return result


def _check_project(client: GitlabClient) -> None:
    try:
        client.project()
    except NotFound as error:
        raise PreconditionFailed(
            error.message,
            hint="check gitlab.project in the profile and ask for access to the project; nothing was filed",
        ) from error


def _check_labels(request: IssueRequest, client: GitlabClient, allow_new_labels: bool) -> list[str]:
    existing = client.label_names()
    missing = [name for name in request.labels if name not in existing]
    if missing and not allow_new_labels:
        raise PreconditionFailed(
            f"labels missing in the GitLab project: {', '.join(missing)}; nothing was filed",
            hint=f"create them in GitLab, fix labels.{request.label} in the profile, or pass --allow-new-labels",
        )
    return missing


def _check_assignee(request: IssueRequest, client: GitlabClient) -> dict[str, Any]:
    user = client.user_by_username(request.assignee)
    if user is None:
        raise PreconditionFailed(
            f"GitLab user {request.assignee!r} not found; nothing was filed",
            hint="fix the username in the profile's routing section",
        )
    return user


def _create_once(request: IssueRequest, client: GitlabClient, assignee_id: int) -> tuple[dict[str, Any], list[str]]:
    """Create the issue; after a failure with an unknown effect, look for the marker again."""
    try:
        return client.create_issue(request.payload(assignee_id)), []
    except ServiceError as error:
        if not _effect_unknown(error):
            error.hint = _rejected_hint(error, request)
            raise

        try:
            existing = client.find_issue_by_marker(request.marker)
        except HelpctlError as lookup_error:
            error.hint = (
                f"the issue may or may not exist (the check failed too: {lookup_error.message}); the case is unchanged. "
                "Run the filing again: it looks for the case marker first, so it cannot file twice"
            )
            raise error
        if existing is None:
            error.hint = (
                "no issue carries the case marker, so nothing was filed and the case is unchanged. "
                "Run the filing again: it looks for the marker first, so it cannot file twice"
            )
            raise
        return existing, [f"the create request failed ({error.message}), but the issue was created"]


def _effect_unknown(error: ServiceError) -> bool:
    """Tell whether the request may have been carried out: no response, or a 5xx response."""
    if isinstance(error, (RateLimited, NotFound)):
        return False
    return error.status is None or error.status >= 500


def _rejected_hint(error: ServiceError, request: IssueRequest) -> str:
    if isinstance(error, RateLimited):
        wait = f"{error.retry_after:g} s" if error.retry_after is not None else "a minute"
        return f"GitLab rate-limited the request and nothing was filed; wait {wait} and run the filing again"
    if error.status == 400:
        return (
            f"nothing was filed and the case is unchanged (title {len(request.title)} characters, "
            f"description {len(request.description)}). Lower gitlab.title_limit or gitlab.description_limit "
            "in the profile to the server's limits and run the filing again"
        )
    return "nothing was filed and the case is unchanged; fix the cause above and run the filing again"


def _result(issue: dict[str, Any], request: IssueRequest, *, created: bool, dry_run: bool) -> FilingResult:
    return FilingResult(
        iid=issue.get("iid"),
        url=issue.get("web_url"),
        labels=list(issue.get("labels") or []),
        assignee=issue.get("assignee"),
        created=created,
        request=request,
        dry_run=dry_run,
        state=issue.get("state"),
    )

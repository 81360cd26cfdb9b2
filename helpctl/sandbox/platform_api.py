"""Stand-in for the Fluid Attacks platform's GraphQL API (`POST /api`), built on graphql-core.

It serves the schema in `platform_schema.graphql` over the seeded KiwiCorp story and behaves
as the platform does towards a client:

- Guards run before execution and return HTTP 400 with the platform's exact messages. The
  limits are 3 root fields, depth 8, 3000 characters, 50 directives, alphanumeric operation
  names, no undeclared variables, and `first` of at least 1. Syntax and schema errors also
  get 400.
- A missing or unknown bearer token gets `Login required` (HTTP 200, data null).
- Authorization uses the caller's group and organization roles, with the platform's messages
  (`Access denied`, `Access denied or group not found`, ...). A group without the ASM service
  denies every field except name, userRole, permissions and hasAsm.
- `fail_operations` names operations that get an internal error, for tests of the
  probe's server-error path. It can also be set with `POST /_sandbox/knobs`.
- Mutations (access management) live in `platform_access`: their knobs
  (`mutation_concurrency`, `mutation_latency`, `mutation_retry_after`) are set with
  `POST /_sandbox/knobs` too, and `GET /_sandbox/mutations` lists every mutation request.
  Queries and mutations run one at a time against the story, under `state_lock`.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime as dt
import functools
import importlib.resources
import json
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    VariableNode,
    Visitor,
    build_schema,
    execute,
    parse,
    validate,
    visit,
)

from helpctl.sandbox import platform_access as access
from helpctl.sandbox import platform_seed as seed
from helpctl.sandbox.server import HTML_502, Request, Response, Service

MAX_BREADTH = 3
MAX_DEPTH = 8
MAX_CHARACTERS = 3000
MAX_DIRECTIVES = 50
OPERATION_NAME = re.compile(r"^[A-Za-z0-9]+$")

BREADTH_EXCEEDED = "Exception - Max query breadth exceeded"
DEPTH_EXCEEDED = "Exception - Max query depth exceeded"
CHARACTERS_EXCEEDED = "Exception - Max characters exceeded"
DIRECTIVES_EXCEEDED = "Exception - Max directives exceeded"
INVALID_OPERATION_NAME = "Exception - Invalid operation name"
EXTRA_VARIABLES = "Exception - Extra variables in operation"
FIRST_NOT_POSITIVE = "Exception - The argument must be a positive integer: first"
LOGIN_REQUIRED = "Login required"
ACCESS_DENIED = "Access denied"
GROUP_NOT_FOUND = "Access denied or group not found"
ORGANIZATION_NOT_FOUND = "Access denied or organization not found"
STAKEHOLDER_NOT_FOUND = "Access denied or stakeholder not found"
EVENT_NOT_FOUND = "Exception - Event not found"
UNEXPECTED_ERROR = "Exception - Unexpected error"

LIST_GROUP_MEMBERS = "api_resolvers_group_stakeholders_resolve"
LIST_ORGANIZATION_MEMBERS = "api_resolvers_organization_stakeholders_resolve"

_READ_GROUP = (
    "api_resolvers_query_group_resolve",
    "api_resolvers_group_findings_resolve",
    "api_resolvers_group_vulnerabilities_resolve",
    "api_resolvers_group_events_resolve",
    "api_resolvers_query_events_resolve",
    "api_resolvers_query_event_resolve",
    "api_mutations_request_vulnerabilities_verification_mutate",
    "api_mutations_update_vulnerabilities_treatment_mutate",
)
_VIEW_MEMBERS = (LIST_GROUP_MEMBERS, "api_mutations_handle_vulnerabilities_acceptance_mutate")
_MANAGE_MEMBERS = (
    "api_mutations_grant_stakeholder_access_mutate",
    "api_mutations_update_group_stakeholder_mutate",
    "api_mutations_remove_stakeholder_access_mutate",
)
# Group action names per role, in the style of the platform's authorization model.
GROUP_ACTIONS: dict[str, tuple[str, ...]] = {
    "user": _READ_GROUP,
    "vulnerability_manager": _READ_GROUP + _VIEW_MEMBERS,
    "user_manager": _READ_GROUP + _VIEW_MEMBERS + _MANAGE_MEMBERS,
    "customer_manager": _READ_GROUP + _VIEW_MEMBERS + _MANAGE_MEMBERS,
    "admin": _READ_GROUP + _VIEW_MEMBERS + _MANAGE_MEMBERS + ("api_mutations_remove_group_mutate",),
}

_READ_ORGANIZATION = ("api_resolvers_query_organization_resolve", "api_resolvers_organization_groups_resolve")
_MANAGE_ORGANIZATION = (
    LIST_ORGANIZATION_MEMBERS,
    "api_mutations_grant_stakeholder_organization_access_mutate",
    "api_mutations_update_organization_stakeholder_mutate",
    "api_mutations_remove_stakeholder_organization_access_mutate",
)
ORGANIZATION_ACTIONS: dict[str, tuple[str, ...]] = {
    "user": _READ_ORGANIZATION,
    "user_manager": _READ_ORGANIZATION + _MANAGE_ORGANIZATION,
    "customer_manager": _READ_ORGANIZATION + _MANAGE_ORGANIZATION,
    "admin": _READ_ORGANIZATION + _MANAGE_ORGANIZATION,
}

USER_ACTIONS: dict[str, tuple[str, ...]] = {
    "user": ("api_resolvers_query_me_resolve", "api_mutations_add_access_token_mutate"),
    "hacker": (
        "api_resolvers_query_me_resolve",
        "api_mutations_add_access_token_mutate",
        "api_resolvers_query_organization_id_resolve",
    ),
}

# Fields a group without the ASM service still resolves.
OPEN_GROUP_FIELDS = frozenset({"name", "userRole", "permissions", "hasAsm"})
# Vulnerability states the platform leaves out of a listing unless asked for them.
HIDDEN_STATES = frozenset({"DELETED", "REJECTED", "SUBMITTED"})
DEFAULT_PAGE_SIZE = 10
# Seconds a token lives, for `me.sessionExpiration` (the platform allows up to 6 months).
TOKEN_LIFETIME = dt.timedelta(days=180)


class GuardViolation(Exception):
    """A request that the platform rejects before execution (HTTP 400)."""


@functools.cache
def load_schema() -> GraphQLSchema:
    """Build the executable schema: the SDL file with this module's resolvers attached."""
    text = importlib.resources.files("helpctl.sandbox").joinpath("platform_schema.graphql").read_text("utf-8")
    schema = build_schema(text)
    _attach(schema, "Query", QUERY_RESOLVERS)
    _attach(schema, "Group", {name: _group_field(name, resolver) for name, resolver in GROUP_RESOLVERS.items()})
    _attach(schema, "Organization", ORGANIZATION_RESOLVERS)
    _attach(schema, "Stakeholder", {"groups": _stakeholder_groups})
    mutations = {name: access.logged_resolver(name, resolver) for name, resolver in access.MUTATION_RESOLVERS.items()}
    _attach(schema, "Mutation", mutations)
    return schema


def _attach(schema: GraphQLSchema, type_name: str, resolvers: dict[str, Callable[..., Any]]) -> None:
    fields = schema.get_type(type_name).fields  # type: ignore[union-attr]
    for name, resolver in resolvers.items():
        fields[name].resolve = resolver


class PlatformService(Service):
    name = "platform"

    def __init__(
        self,
        now: dt.datetime | None = None,
        fail_operations: Iterable[str] = (),
        organizations: Sequence[access.OrganizationSpec] = (),
        bigcorp: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Serve the seeded story; `bigcorp` and `organizations` add generated organizations.

        `clock` (seconds) times the one-minute re-invite rule, so tests can move it forward.
        """
        super().__init__()
        self.story = seed.build_story(now)
        for spec in ([access.BIGCORP] if bigcorp else []) + list(organizations):
            access.generate_organization(self.story, spec)
        self.fail_operations: set[str] = set(fail_operations)
        self.schema = load_schema()
        self.access = access.AccessDesk(self.story, clock)
        self.state_lock = threading.RLock()

    def handle(self, request: Request) -> Response:
        if request.path.rstrip("/") != "/api":
            return Response(404, b"", {"Content-Type": "text/plain"})
        if request.method != "POST":
            return Response.text("<html><body>GraphiQL is not served by the sandbox</body></html>", 200, "text/html")

        try:
            query, variables, operation_name = _read_body(request)
            document, operation = check_guards(query, variables, operation_name)
        except GuardViolation as error:
            return Response.json({"errors": [{"message": str(error)}]}, 400)
        except GraphQLError as error:
            return Response.json({"errors": [error.formatted]}, 400)

        problems = _checked(query, operation_name).problems
        if problems:
            return Response.json({"errors": [problem.formatted for problem in problems]}, 400)

        caller = self.story.tokens.get(_bearer_token(request))
        if caller is None and _needs_login(operation, document):
            return Response.json({"data": None, "errors": [_root_error(LOGIN_REQUIRED, operation)]})

        with self.lock:
            failing = operation.name is not None and operation.name.value in self.fail_operations
        if failing:
            return Response.json({"data": None, "errors": [_root_error(UNEXPECTED_ERROR, operation)]})

        if operation.operation == OperationType.MUTATION:
            return self._mutate(document, operation, variables, operation_name, caller)
        return self._execute(document, variables, operation_name, caller)

    def _mutate(
        self,
        document: DocumentNode,
        operation: OperationDefinitionNode,
        variables: dict[str, Any],
        operation_name: str | None,
        caller: str | None,
    ) -> Response:
        """Run a mutation within the desk's concurrency limit, after its latency, with the test hook."""
        desk = self.access
        names = [field.name.value for field in operation.selection_set.selections if isinstance(field, FieldNode)]
        if not desk.admit():
            for name in names:
                desk.record(name, variables, "rate_limited")
            retry = f"{desk.knobs.mutation_retry_after:g}"
            return Response.json({"message": "429 Too Many Requests"}, 429, {"Retry-After": retry})

        try:
            if desk.knobs.mutation_latency > 0:
                time.sleep(desk.knobs.mutation_latency)
            if any([desk.call_hook("received", name, variables) for name in names]):
                for name in names:
                    desk.record(name, variables, "dropped")
                return Response(502, HTML_502, {"Content-Type": "text/html"})
            answer = self._execute(document, variables, operation_name, caller)
            for name in names:
                desk.call_hook("applied", name, variables)
            return answer
        finally:
            desk.release()

    def _execute(
        self, document: DocumentNode, variables: dict[str, Any], operation_name: str | None, caller: str | None
    ) -> Response:
        with self.state_lock:
            result = execute(
                self.schema,
                document,
                context_value=_Context(self.story, caller or "", self.access),
                variable_values=variables,
                operation_name=operation_name,
            )
        answer = result.formatted
        # Variable coercion fails before execution starts, so the platform returns 400.
        if result.data is None and result.errors and all(error.path is None for error in result.errors):
            return Response.json({"errors": answer["errors"]}, 400)
        return Response.json(answer)

    def _control(self, request: Request) -> Response:
        """Accept `fail_operations` and the mutation knobs beside the base class's knobs in
        `POST /_sandbox/knobs`, and list the mutations seen at `GET /_sandbox/mutations`."""
        if request.path == "/_sandbox/mutations":
            return Response.json([record.as_dict() for record in self.access.records()])
        if request.path != "/_sandbox/knobs" or request.method != "POST":
            return super()._control(request)
        try:
            values = dict(request.json() or {})
            rest = self.apply_knobs(values)
        except (ValueError, TypeError) as error:
            return Response.json({"error": str(error)}, 400)
        return super()._control(dataclasses.replace(request, body=json.dumps(rest).encode("utf-8")))

    def apply_knobs(self, values: dict[str, Any]) -> dict[str, Any]:
        """Set this service's own knobs from `values`; return the ones left for the base class."""
        rest = dict(values)
        if "fail_operations" in rest:
            with self.lock:
                self.fail_operations = set(rest.pop("fail_operations") or ())
        own = {name: rest.pop(name) for name in list(rest) if name in access.KNOB_NAMES}
        if own:
            with self.access.lock:
                self.access.knobs.update(own)
        if rest:
            with self.lock:
                self.knobs.update(rest)
        return {}


def _read_body(request: Request) -> tuple[str, dict[str, Any], str | None]:
    try:
        body = request.json()
    except (ValueError, UnicodeDecodeError) as error:
        raise GuardViolation("Operation data should be a JSON object") from error
    if not isinstance(body, dict):
        raise GuardViolation("Operation data should be a JSON object")

    query = body.get("query")
    variables = body.get("variables") or {}
    operation_name = body.get("operationName")
    if not isinstance(query, str):
        raise GuardViolation("The query must be a string.")
    if not isinstance(variables, dict):
        raise GuardViolation("Query variables must be a null or an object.")
    if operation_name is not None and not isinstance(operation_name, str):
        raise GuardViolation('"operationName" must be a string or null.')
    return query, variables, operation_name


def _bearer_token(request: Request) -> str:
    # The platform takes the second whitespace-separated word of the header as the token.
    words = request.header("authorization").split()
    return words[1] if len(words) >= 2 else ""


# ---------------------------------------------------------------------------------------------
# Guards


def check_guards(
    query: str, variables: dict[str, Any], operation_name: str | None
) -> tuple[DocumentNode, OperationDefinitionNode]:
    """Apply the platform's limits; return the parsed document and the operation to run.

    Raises GuardViolation with the platform's message, or GraphQLError for a syntax error.
    The checks of the text alone are cached per query text; those of the variables run each time.
    """
    checked = _checked(query, operation_name)
    if set(variables) - checked.declared:
        raise GuardViolation(EXTRA_VARIABLES)
    first_values = [variables.get(name) for name in checked.first_variables]
    if checked.first_literal_not_positive or any(isinstance(value, int) and value < 1 for value in first_values):
        raise GuardViolation(FIRST_NOT_POSITIVE)
    return checked.document, checked.operation


@dataclasses.dataclass(frozen=True)
class _Checked:
    """A query text that passed the guards of the text alone, with its validation problems."""

    document: DocumentNode
    operation: OperationDefinitionNode
    declared: frozenset[str]
    first_variables: tuple[str, ...]
    first_literal_not_positive: bool
    problems: tuple[GraphQLError, ...]


# Parsing, the text's guards and validation cost about a millisecond per request, and clients
# send the same few documents over and over (as the platform receives them too).
@functools.lru_cache(maxsize=512)
def _checked(query: str, operation_name: str | None) -> _Checked:
    if len(query) > MAX_CHARACTERS:
        raise GuardViolation(CHARACTERS_EXCEEDED)

    document = parse(query)
    operations = [node for node in document.definitions if isinstance(node, OperationDefinitionNode)]
    names = [node.name.value for node in operations if node.name is not None]
    if operation_name is not None:
        names.append(operation_name)
    if any(not OPERATION_NAME.match(name) for name in names):
        raise GuardViolation(INVALID_OPERATION_NAME)

    operation = _select_operation(operations, operation_name)
    fragments = {node.name.value: node for node in document.definitions if isinstance(node, FragmentDefinitionNode)}
    if len(_root_fields(operation.selection_set, fragments)) > MAX_BREADTH:
        raise GuardViolation(BREADTH_EXCEEDED)
    if selection_depth(operation.selection_set, fragments) > MAX_DEPTH:
        raise GuardViolation(DEPTH_EXCEEDED)

    counter = _DirectiveAndFirstVisitor()
    visit(document, counter)
    if counter.directives > MAX_DIRECTIVES:
        raise GuardViolation(DIRECTIVES_EXCEEDED)

    declared = frozenset(definition.variable.name.value for definition in operation.variable_definitions or ())
    problems = tuple(validate(load_schema(), document))
    return _Checked(document, operation, declared, tuple(counter.first_variables), counter.first_not_positive, problems)


def _select_operation(operations: list[OperationDefinitionNode], name: str | None) -> OperationDefinitionNode:
    if name is not None:
        for operation in operations:
            if operation.name is not None and operation.name.value == name:
                return operation
        raise GraphQLError(f"Unknown operation named '{name}'.")
    if len(operations) != 1:
        raise GraphQLError("Must provide operation name if query contains multiple operations.")
    return operations[0]


def _root_fields(selection_set: SelectionSetNode, fragments: dict[str, FragmentDefinitionNode]) -> list[FieldNode]:
    fields: list[FieldNode] = []
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            fields.append(selection)
        elif isinstance(selection, InlineFragmentNode):
            fields += _root_fields(selection.selection_set, fragments)
        elif isinstance(selection, FragmentSpreadNode) and selection.name.value in fragments:
            fields += _root_fields(fragments[selection.name.value].selection_set, fragments)
    return fields


def selection_depth(
    selection_set: SelectionSetNode | None,
    fragments: dict[str, FragmentDefinitionNode],
    seen: frozenset[str] = frozenset(),
) -> int:
    """Return the nesting depth of fields. A root field alone is depth 1, and fragments count as inlined."""
    if selection_set is None:
        return 0
    deepest = 0
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            deepest = max(deepest, 1 + selection_depth(selection.selection_set, fragments, seen))
        elif isinstance(selection, InlineFragmentNode):
            deepest = max(deepest, selection_depth(selection.selection_set, fragments, seen))
        elif isinstance(selection, FragmentSpreadNode):
            name = selection.name.value
            if name in fragments and name not in seen:
                deepest = max(deepest, selection_depth(fragments[name].selection_set, fragments, seen | {name}))
    return deepest


class _DirectiveAndFirstVisitor(Visitor):
    """Count directives, spot a literal `first` below 1 and collect the variables given as `first`."""

    def __init__(self) -> None:
        super().__init__()
        self.directives = 0
        self.first_not_positive = False
        self.first_variables: list[str] = []

    def enter_directive(self, *_args: Any) -> None:
        self.directives += 1

    def enter_argument(self, node: Any, *_args: Any) -> None:
        if node.name.value != "first":
            return
        if isinstance(node.value, IntValueNode) and int(node.value.value) < 1:
            self.first_not_positive = True
        elif isinstance(node.value, VariableNode):
            self.first_variables.append(node.value.name.value)


def _needs_login(operation: OperationDefinitionNode, document: DocumentNode) -> bool:
    """Return whether the operation needs a token: every root field does except introspection."""
    fragments = {node.name.value: node for node in document.definitions if isinstance(node, FragmentDefinitionNode)}
    return any(not field.name.value.startswith("__") for field in _root_fields(operation.selection_set, fragments))


def _root_error(message: str, operation: OperationDefinitionNode) -> dict[str, Any]:
    first = next((node for node in operation.selection_set.selections if isinstance(node, FieldNode)), None)
    error: dict[str, Any] = {"message": message}
    if first is not None:
        key = first.alias.value if first.alias else first.name.value
        error["path"] = [key]
        if first.loc is not None:
            error["locations"] = [{"line": first.loc.start_token.line, "column": first.loc.start_token.column}]
    return error


# ---------------------------------------------------------------------------------------------
# Resolvers


@dataclasses.dataclass
class _Context:
    story: seed.Story
    caller: str  # the token owner's email
    access: Any = None  # the service's platform_access.AccessDesk


@dataclasses.dataclass
class _GroupView:
    group: seed.Group
    role: str | None  # the caller's role in the group; None when the caller has none


@dataclasses.dataclass
class _OrganizationView:
    organization: seed.Organization
    role: str | None


def _context(info: Any) -> _Context:
    return info.context


def _group_view(info: Any, name: str | None) -> _GroupView:
    context = _context(info)
    group = context.story.groups.get((name or "").lower())
    member = group.members.get(context.caller) if group else None
    if group is None or member is None:
        raise GraphQLError(GROUP_NOT_FOUND)
    return _GroupView(group, member.role)


def _organization_view(context: _Context, organization: seed.Organization | None) -> _OrganizationView:
    member = organization.members.get(context.caller) if organization else None
    if organization is None or member is None:
        raise GraphQLError(ORGANIZATION_NOT_FOUND)
    return _OrganizationView(organization, member.role)


def _require_action(view: _GroupView, action: str) -> None:
    if action not in GROUP_ACTIONS.get(view.role or "", ()):
        raise GraphQLError(ACCESS_DENIED)


def _resolve_me(_root: Any, info: Any, callerOrigin: str | None = None) -> dict[str, Any]:
    context = _context(info)
    user = context.story.users[context.caller]
    organizations = [
        _OrganizationView(organization, organization.members[user.email].role)
        for organization in context.story.organizations.values()
        if user.email in organization.members
    ]
    expiration = context.story.now + TOKEN_LIFETIME
    return {
        "userEmail": user.email,
        "userName": user.name,
        "role": user.role,
        "permissions": list(USER_ACTIONS.get(user.role, ())),
        "organizations": organizations,
        "sessionExpiration": str(int(expiration.timestamp())),
    }


def _resolve_organization(_root: Any, info: Any, organizationId: str) -> _OrganizationView:
    context = _context(info)
    return _organization_view(context, context.story.organization_by_id(organizationId))


def _resolve_organization_by_name(_root: Any, info: Any, organizationName: str) -> _OrganizationView:
    context = _context(info)
    return _organization_view(context, context.story.organizations.get(organizationName.lower()))


def _resolve_group(_root: Any, info: Any, groupName: str) -> _GroupView:
    return _group_view(info, groupName)


def _resolve_stakeholder(
    _root: Any,
    info: Any,
    entity: str,
    userEmail: str,
    groupName: str | None = None,
    organizationId: str | None = None,
) -> dict[str, Any]:
    if entity == "GROUP":
        view = _group_view(info, groupName)
        _require_action(view, LIST_GROUP_MEMBERS)
        if not view.group.has_asm:
            raise GraphQLError(ACCESS_DENIED)
        member = view.group.members.get(userEmail.strip().lower())
    else:
        organization = _organization_view(_context(info), _context(info).story.organization_by_id(organizationId or ""))
        if LIST_ORGANIZATION_MEMBERS not in ORGANIZATION_ACTIONS.get(organization.role or "", ()):
            raise GraphQLError(ACCESS_DENIED)
        member = organization.organization.members.get(userEmail.strip().lower())

    if member is None:
        raise GraphQLError(STAKEHOLDER_NOT_FOUND)
    return _stakeholder(member)


def _resolve_event(_root: Any, info: Any, groupName: str, identifier: str) -> dict[str, Any]:
    view = _group_view(info, groupName)
    if not view.group.has_asm:
        raise GraphQLError(ACCESS_DENIED)
    for event in view.group.events:
        if event.id == identifier:
            return _event(event, view.group)
    raise GraphQLError(EVENT_NOT_FOUND)


def _resolve_events(_root: Any, info: Any, groupName: str | None = None) -> list[dict[str, Any]]:
    view = _group_view(info, groupName)
    if not view.group.has_asm:
        raise GraphQLError(ACCESS_DENIED)
    return [_event(event, view.group) for event in view.group.events]


QUERY_RESOLVERS: dict[str, Callable[..., Any]] = {
    "me": _resolve_me,
    "organization": _resolve_organization,
    "organizationId": _resolve_organization_by_name,
    "group": _resolve_group,
    "stakeholder": _resolve_stakeholder,
    "event": _resolve_event,
    "events": _resolve_events,
}


def _group_field(name: str, resolver: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a Group field so that it needs a role, and the ASM service unless the field is open."""

    def resolve(view: _GroupView, info: Any, **arguments: Any) -> Any:
        if name not in OPEN_GROUP_FIELDS and (view.role is None or not view.group.has_asm):
            raise GraphQLError(ACCESS_DENIED)
        return resolver(view, info, **arguments)

    return resolve


def _group_stakeholders(view: _GroupView, _info: Any) -> list[dict[str, Any]]:
    _require_action(view, LIST_GROUP_MEMBERS)
    return [_stakeholder(member) for member in view.group.members.values()]


def _group_findings(view: _GroupView, _info: Any, filters: Any = None) -> list[dict[str, Any]]:
    # NOTE: `filters` is accepted and ignored; every seeded finding is verified.
    return [_finding(finding, view.group) for finding in view.group.findings]


GROUP_RESOLVERS: dict[str, Callable[..., Any]] = {
    "name": lambda view, _info: view.group.name,
    "organization": lambda view, _info: view.group.organization,
    "description": lambda view, _info: view.group.description,
    "service": lambda view, _info: view.group.service,
    "subscription": lambda view, _info: view.group.subscription,
    "tier": lambda view, _info: view.group.tier,
    "hasAsm": lambda view, _info: view.group.has_asm,
    "hasMachine": lambda view, _info: view.group.has_machine,
    "hasSquad": lambda view, _info: view.group.has_squad,
    "userRole": lambda view, _info: view.role,
    "permissions": lambda view, _info: list(GROUP_ACTIONS.get(view.role or "", ())),
    "openFindings": lambda view, _info: view.group.open_findings,
    "openVulnerabilities": lambda view, _info: view.group.open_vulnerabilities,
    "closedVulnerabilities": lambda view, _info: view.group.closed_vulnerabilities,
    "stakeholders": _group_stakeholders,
    "findings": _group_findings,
    "vulnerabilities": lambda view, _info, **arguments: vulnerabilities_page(view.group, **arguments),
    "events": lambda view, _info: [_event(event, view.group) for event in view.group.events],
}


def _organization_groups(view: _OrganizationView, info: Any) -> list[_GroupView]:
    # Organization managers get every group of the organization, others only their own.
    # NOTE: this rule is an assumption of the stand-in, because the platform does not document it.
    caller = _context(info).caller
    sees_all = LIST_ORGANIZATION_MEMBERS in ORGANIZATION_ACTIONS.get(view.role or "", ())
    views = []
    for name in view.organization.groups:
        group = _context(info).story.groups[name]
        member = group.members.get(caller)
        if member is not None or sees_all:
            views.append(_GroupView(group, member.role if member else None))
    return views


def _organization_stakeholders(view: _OrganizationView, _info: Any) -> list[dict[str, Any]]:
    if LIST_ORGANIZATION_MEMBERS not in ORGANIZATION_ACTIONS.get(view.role or "", ()):
        raise GraphQLError(ACCESS_DENIED)
    return [_stakeholder(member) for member in view.organization.members.values()]


ORGANIZATION_RESOLVERS: dict[str, Callable[..., Any]] = {
    "id": lambda view, _info: view.organization.id,
    "name": lambda view, _info: view.organization.name,
    "country": lambda view, _info: view.organization.country,
    "userRole": lambda view, _info: view.role,
    "permissions": lambda view, _info: list(ORGANIZATION_ACTIONS.get(view.role or "", ())),
    "inactivityPeriod": lambda view, _info: view.organization.inactivity_period,
    "groups": _organization_groups,
    "stakeholders": _organization_stakeholders,
}


def _stakeholder_groups(record: dict[str, Any], info: Any) -> list[_GroupView]:
    """Return the groups the person can access, each with the caller's own role on it."""
    context = _context(info)
    views = []
    for group in context.story.groups_of(record["email"]):
        member = group.members.get(context.caller)
        views.append(_GroupView(group, member.role if member else None))
    return views


def _stakeholder(member: seed.Membership) -> dict[str, Any]:
    missing = "-" if member.dash_when_missing else None
    pending = member.invitation_state == "PENDING"
    return {
        "email": member.email,
        "role": member.role,
        "responsibility": member.responsibility,
        "invitationState": member.invitation_state,
        "firstLogin": seed.format_date(member.first_login) or missing,
        "lastLogin": seed.format_date(member.last_login) or missing,
        "invitationDate": seed.format_date(member.invited_at) if pending else None,
    }


def _finding(finding: seed.Finding, group: seed.Group) -> dict[str, Any]:
    return {
        "id": finding.id,
        "title": finding.title,
        "groupName": group.name,
        "status": finding.status,
        "severityScore": finding.severity_score,
        "openVulnerabilities": finding.open_vulnerabilities,
        "closedVulnerabilities": finding.closed_vulnerabilities,
        "reportDate": seed.format_date(finding.report_date),
    }


def _event(event: seed.Event, group: seed.Group) -> dict[str, Any]:
    return {
        "id": event.id,
        "groupName": group.name,
        "eventType": event.event_type,
        "eventStatus": event.event_status,
        "eventDate": seed.format_date(event.event_date),
        "closingDate": seed.format_date(event.closing_date),
        "detail": event.detail,
        "hacker": event.hacker,
        "client": group.organization,
    }


def _vulnerability(vulnerability: seed.Vulnerability, group: seed.Group) -> dict[str, Any]:
    return {
        "id": vulnerability.id,
        "findingId": vulnerability.finding_id,
        "groupName": group.name,
        "state": vulnerability.state,
        "where": vulnerability.where,
        "specific": vulnerability.specific,
        "vulnerabilityType": vulnerability.vulnerability_type,
        "severityTemporalScore": vulnerability.severity_temporal_score,
        "treatmentStatus": vulnerability.treatment_status,
        "reportDate": seed.format_date(vulnerability.report_date),
    }


def vulnerabilities_page(
    group: seed.Group,
    after: str | None = None,
    first: int | None = None,
    stateStatus: str | None = None,
    treatment: str | None = None,
    type: str | None = None,
    minSeverity: float | None = None,
    maxSeverity: float | None = None,
    **_unused_filters: Any,
) -> dict[str, Any]:
    """Return one page of the group's vulnerabilities as a Relay connection.

    As on the platform, every edge of a page carries the page's end cursor. The search,
    root, verification and zero-risk filters are accepted and ignored.
    """
    rows = [
        row
        for row in group.vulnerabilities
        if (row.state == stateStatus.upper() if stateStatus else row.state not in HIDDEN_STATES)
        and (treatment is None or row.treatment_status == treatment.upper())
        and (type is None or row.vulnerability_type == type.lower())
        and (minSeverity is None or row.severity_temporal_score >= minSeverity)
        and (maxSeverity is None or row.severity_temporal_score <= maxSeverity)
    ]
    start = _cursor_offset(after)
    page = rows[start : start + (first if first is not None else DEFAULT_PAGE_SIZE)]
    end = start + len(page)
    cursor = _cursor(end)
    return {
        "edges": [{"cursor": cursor, "node": _vulnerability(row, group)} for row in page],
        "pageInfo": {"endCursor": cursor, "hasNextPage": end < len(rows)},
        "total": len(rows),
    }


def _cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode("ascii")).decode("ascii")


def _cursor_offset(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        text = base64.urlsafe_b64decode(cursor.encode("ascii")).decode("ascii")
        return max(0, int(text.removeprefix("offset:")))
    except (ValueError, binascii.Error, UnicodeError) as error:
        # NOTE: the platform's message for a malformed cursor is not documented.
        raise GraphQLError("Exception - Invalid cursor") from error

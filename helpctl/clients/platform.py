"""The Fluid Attacks platform client: gql over httpx with helpctl's limits, retries and errors.

Only the commands that talk to the platform import this module, because importing gql,
graphql-core and httpx costs start-up time.

Before a document is sent, the client checks the limits the platform enforces: operation
names of letters and digits, at most 3000 characters, 3 root fields, depth 8, and no
undeclared variables. A violation raises UsageError and nothing is sent, because such a
document is a helpctl bug or bad input.

Retries apply to queries only, never to mutations, within `retries` extra attempts and the
`timeouts.total` budget: HTML or other non-GraphQL 5xx responses (a proxy or load balancer),
429 (after Retry-After), timeouts and failed connections. GraphQL errors are never retried,
because they are deterministic. A 200 answer with data and errors is a partial result and
is returned, not raised. Every gql and httpx exception is translated into helpctl's errors
here, with a short text excerpt of the answer and never the token.

The schema is not fetched before queries (`fetch_schema_from_transport=False`): a server
that rejects introspection must not block evidence collection. The role enums and the
Stakeholder fields are read by one introspection query, cached per endpoint, and replaced
by the 2023 public schema's values with a warning when introspection fails.
"""

from __future__ import annotations

import dataclasses
import functools
import email.utils
import hashlib
import html
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
from gql import Client, GraphQLRequest
from gql.transport.exceptions import (
    TransportConnectionFailed,
    TransportError,
    TransportProtocolError,
    TransportQueryError,
    TransportServerError,
)
from gql.transport.httpx import HTTPXTransport
from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    parse,
    print_ast,
)

from helpctl import __version__, credentials, paths
from helpctl.config.settings import PlatformSettings
from helpctl.errors import (
    AuthError,
    ConfigError,
    HelpctlError,
    RateLimited,
    ServiceError,
    ServiceTimeout,
    UsageError,
)

logger = logging.getLogger(__name__)

SERVICE = "platform"
LOGIN_HINT = "run 'helpctl auth login platform' to store a valid platform token"
AUTH_MESSAGES = frozenset({"Login required", "Exception - User token has expired"})
AUTH_WORDS = re.compile(r"authenticat|login|unauthori[sz]ed|token|credential", re.IGNORECASE)

# The platform's own limits. A document beyond them gets HTTP 400.
MAX_CHARACTERS = 3000
MAX_ROOT_FIELDS = 3
MAX_DEPTH = 8
OPERATION_NAME = re.compile(r"^[A-Za-z0-9]+$")

EXCERPT_CHARS = 160
MAX_BACKOFF_SECONDS = 8.0

# Values of the platform's public schema as of late 2023 (integrates/back/src/api/enums/enums.graphql
# and resolvers/stakeholder/schema.graphql in Fluid Attacks' universe repository), used when
# introspection fails.
FALLBACK_GROUP_ROLES = (
    "ADMIN",
    "ARCHITECT",
    "CUSTOMER_MANAGER",
    "HACKER",
    "INTERNAL_MANAGER",
    "REATTACKER",
    "RESOURCER",
    "REVIEWER",
    "SERVICE_FORCES",
    "USER",
    "USER_MANAGER",
    "VULNERABILITY_MANAGER",
)
FALLBACK_ORGANIZATION_ROLES = ("CUSTOMER_MANAGER", "USER", "USER_MANAGER")
FALLBACK_STAKEHOLDER_FIELDS = (
    "email",
    "firstLogin",
    "groups",
    "invitationState",
    "lastLogin",
    "responsibility",
    "role",
)

SCHEMA_FACTS_QUERY = """query HelpctlSchemaFacts {
  group: __type(name: "StakeholderRole") { enumValues { name } }
  organization: __type(name: "OrganizationRole") { enumValues { name } }
  stakeholder: __type(name: "Stakeholder") { fields { name } }
}"""

ME_QUERY = """query HelpctlMe {
  me { userEmail userName role permissions organizations { id name groups { name } } }
}"""

# Public docs renamed User Manager to Group Manager (group level) and Organization Manager
# (organization level). No public source shows the new enum spelling, so both are tried.
RENAMED_ROLES: dict[str, dict[str, tuple[str, ...]]] = {
    "group": {
        "GROUP_MANAGER": ("GROUP_MANAGER", "USER_MANAGER"),
        "USER_MANAGER": ("USER_MANAGER", "GROUP_MANAGER"),
    },
    "organization": {
        "ORGANIZATION_MANAGER": ("ORGANIZATION_MANAGER", "USER_MANAGER"),
        "USER_MANAGER": ("USER_MANAGER", "ORGANIZATION_MANAGER"),
    },
}
DISPLAY_NAMES: dict[str, dict[str, str]] = {
    "group": {
        "user_manager": "Group Manager",
        "group_manager": "Group Manager",
        "vulnerability_manager": "Vulnerability Manager",
        "user": "User",
    },
    "organization": {
        "user_manager": "Organization Manager",
        "organization_manager": "Organization Manager",
        "user": "User",
    },
}
ROLE_LEVELS = ("group", "organization")


@dataclasses.dataclass(frozen=True)
class PlatformError:
    """One entry of a GraphQL `errors` list."""

    message: str
    path: tuple[str | int, ...] = ()

    @property
    def root(self) -> str | None:
        """The response key of the root field the error belongs to (an alias when one was used)."""
        return str(self.path[0]) if self.path else None


@dataclasses.dataclass
class PlatformResult:
    """A GraphQL response. `data` may be partial, and then `errors` lists what is missing."""

    operation: str
    query: str  # the text sent, as gql printed it
    variables: dict[str, Any]
    data: dict[str, Any] | None
    errors: list[PlatformError]
    status: int | None

    def field(self, key: str) -> Any:
        return (self.data or {}).get(key)

    def errors_for(self, key: str) -> list[PlatformError]:
        return [error for error in self.errors if error.root == key]

    def request(self) -> dict[str, Any]:
        """Return the exact request, for a finding's `request` field."""
        return {"operation": self.operation, "query": self.query, "variables": dict(self.variables)}


@dataclasses.dataclass
class Connection:
    """The nodes of a Relay connection followed page by page.

    `truncated` is true when `max_items` stopped the listing before its end. `interrupted`
    is the error that ended the listing after the first page (the items read so far stay).
    """

    items: list[dict[str, Any]]
    total: int | None
    truncated: bool
    pages: int
    first: PlatformResult
    errors: list[PlatformError] = dataclasses.field(default_factory=list)
    interrupted: HelpctlError | None = None

    @property
    def complete(self) -> bool:
        return not self.truncated and self.interrupted is None and not self.errors


class PlatformQueryError(ServiceError):
    """The platform returned HTTP 4xx/5xx with GraphQL errors. They are deterministic, so never retried."""

    def __init__(self, message: str, *, status: int, messages: list[str]) -> None:
        super().__init__(message, service=SERVICE, status=status)
        self.messages = messages


class _Transient(Exception):
    """A failure worth another attempt; `error` is raised when no attempt is left."""

    def __init__(self, error: HelpctlError, wait: float | None = None) -> None:
        super().__init__(error.message)
        self.error = error
        self.wait = wait


@dataclasses.dataclass
class _Prepared:
    request: GraphQLRequest
    operation: str
    query: str
    variables: dict[str, Any]
    retryable: bool


def role_display(value: str, level: str = "group") -> str:
    """Return the name people read for a lowercase role value ("user_manager" → "Group Manager")."""
    key = value.strip().lower()
    known = DISPLAY_NAMES.get(level, {}).get(key)
    return known or key.replace("_", " ").title()


class PlatformClient:
    """One platform endpoint reached with one token. Safe to share between threads."""

    role_display = staticmethod(role_display)

    def __init__(
        self,
        settings: PlatformSettings,
        token: str,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        problem = settings.validate()
        if problem:
            raise ConfigError(f"platform settings: {problem}")
        if not token:
            raise AuthError("no platform token was given", hint=LOGIN_HINT)

        self.settings = settings
        self.url = settings.url
        self._sleep = sleep
        self._clock = clock
        self._local = threading.local()
        self._session_lock = threading.Lock()
        self._facts_lock = threading.Lock()
        self._session: Any = None
        self._facts: dict[str, list[str]] | None = None
        credentials.register_secret(token)

        timeouts = settings.timeouts
        transport = HTTPXTransport(
            url=settings.url,
            headers={
                "Authorization": f"Bearer {token}",
                "User-Agent": f"helpctl/{__version__}",
                "Accept": "application/json",
            },
            timeout=httpx.Timeout(timeouts.read, connect=timeouts.connect),
            follow_redirects=False,
            event_hooks={"response": [self._on_response]},
        )
        self._client = Client(transport=transport, fetch_schema_from_transport=False)

    def __enter__(self) -> PlatformClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        with self._session_lock:
            if self._session is not None:
                self._client.close_sync()
                self._session = None

    # ----- queries -----

    def execute(self, document: str, variables: Mapping[str, Any] | None, operation_name: str) -> PlatformResult:
        """Send one operation and return its data and GraphQL errors.

        Raises UsageError when the document breaks the platform's limits (nothing is sent),
        AuthError when the token is rejected, ServiceTimeout, RateLimited or ServiceError
        when the platform fails, after the retries a query is allowed.
        """
        prepared = self._prepare(document, dict(variables or {}), operation_name)
        deadline = self._clock() + self.settings.timeouts.total
        attempts = 1 + max(0, self.settings.retries) if prepared.retryable else 1

        for attempt in range(1, attempts + 1):
            try:
                return self._attempt(prepared, deadline)
            except _Transient as failure:
                wait = failure.wait if failure.wait is not None else _backoff(attempt)
                if attempt == attempts or wait > deadline - self._clock():
                    raise failure.error from failure.__cause__
                logger.warning(
                    "platform %s: %s; retrying in %.1f s (attempt %d of %d)",
                    prepared.operation,
                    failure.error.message,
                    wait,
                    attempt + 1,
                    attempts,
                )
                self._sleep(wait)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def me(self) -> dict[str, Any]:
        """Return the token owner's `me`: email, name, user-level role, permissions, organizations."""
        result = self.execute(ME_QUERY, None, "HelpctlMe")
        me = result.field("me")
        if not isinstance(me, dict):
            messages = "; ".join(error.message for error in result.errors) or "no data"
            raise ServiceError(f"platform returned no 'me' for the token: {messages}", service=SERVICE)
        return me

    def paginate(
        self,
        document: str,
        variables: Mapping[str, Any] | None,
        connection_path: str | Sequence[str],
        operation_name: str,
    ) -> Connection:
        """Follow a connection's `pageInfo.endCursor` to its end, reading at most `max_items` nodes.

        The document must declare `$first: Int` and `$after: String` and pass them to the
        connection found at `connection_path` (keys from the data root, such as
        "group.vulnerabilities"). An error on the first page is raised; an error on a later
        page ends the listing and is kept in `Connection.interrupted`.
        """
        path = tuple(connection_path.split(".")) if isinstance(connection_path, str) else tuple(connection_path)
        listing = _Listing(dict(variables or {}), self.settings.page_size, self.settings.max_items)

        while True:
            try:
                result = self.execute(document, listing.next_variables(), operation_name)
            except HelpctlError as error:
                if listing.first is None:
                    raise
                listing.interrupted = error
                break
            if not listing.add(result, _dig(result.data, path), path):
                break
        return listing.connection()

    # ----- role enums and other schema facts -----

    def role_enums(self) -> dict[str, list[str]]:
        """Return the StakeholderRole ("group") and OrganizationRole ("organization") enum values."""
        facts = self._schema_facts()
        return {"group": list(facts["group"]), "organization": list(facts["organization"])}

    def stakeholder_fields(self) -> frozenset[str]:
        """Return the field names of the Stakeholder type, so probes ask only for what exists."""
        return frozenset(self._schema_facts()["stakeholder"])

    def role_to_enum(self, name_or_display: str, level: str = "group") -> str:
        """Map a role as people write it ("Group Manager", "user_manager") to the platform's enum.

        Renamed roles map to whichever spelling the introspected enum holds. Raises
        UsageError for a name that is no role at that level.
        """
        if level not in ROLE_LEVELS:
            raise UsageError(f"role level {level!r} is invalid; use one of {', '.join(ROLE_LEVELS)}")
        key = re.sub(r"[\s\-]+", "_", name_or_display.strip()).upper()
        if not key:
            raise UsageError("a role name is required")

        values = self.role_enums()[level]
        for candidate in RENAMED_ROLES[level].get(key, (key,)):
            if candidate in values:
                return candidate
        valid = ", ".join(f"{role_display(value, level)} ({value})" for value in values)
        raise UsageError(f"{name_or_display!r} is not a {level} role on the platform; valid roles: {valid}")

    def _schema_facts(self) -> dict[str, list[str]]:
        with self._facts_lock:
            if self._facts is None:
                self._facts = self._read_cached_facts() or self._fetch_facts()
            return self._facts

    def _fetch_facts(self) -> dict[str, list[str]]:
        try:
            result = self.execute(SCHEMA_FACTS_QUERY, None, "HelpctlSchemaFacts")
            facts = _facts_from(result)
        except (HelpctlError, ValueError) as error:
            logger.warning(
                "platform introspection failed (%s); using the role names of the 2023 public schema",
                getattr(error, "message", error),
            )
            return {
                "group": list(FALLBACK_GROUP_ROLES),
                "organization": list(FALLBACK_ORGANIZATION_ROLES),
                "stakeholder": list(FALLBACK_STAKEHOLDER_FIELDS),
            }
        self._write_cached_facts(facts)
        return facts

    def facts_cache_path(self) -> Path:
        """Return the cache file of this endpoint's role enums (one file per endpoint URL)."""
        digest = hashlib.sha256(self.url.encode("utf-8")).hexdigest()[:16]
        return paths.cache_dir() / "platform" / f"schema-{digest}.json"

    def _read_cached_facts(self) -> dict[str, list[str]] | None:
        path = self.facts_cache_path()
        try:
            stored = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as error:
            logger.debug("ignoring unreadable platform schema cache %s: %s", path, error)
            return None

        age_seconds = time.time() - float(stored.get("fetched_at", 0))
        if stored.get("url") != self.url or age_seconds > self.settings.enum_cache_hours * 3600:
            return None
        facts = stored.get("facts")
        if not isinstance(facts, dict) or not all(isinstance(facts.get(key), list) for key in _FACT_KEYS):
            return None
        return {key: [str(value) for value in facts[key]] for key in _FACT_KEYS}

    def _write_cached_facts(self, facts: dict[str, list[str]]) -> None:
        path = self.facts_cache_path()
        stored = {"url": self.url, "fetched_at": time.time(), "facts": facts}
        try:
            paths.ensure_private_dir(paths.cache_dir())
            paths.ensure_private_dir(path.parent)
            _write_private(path, json.dumps(stored, indent=2).encode("utf-8"))
        except OSError as error:
            logger.warning("could not write the platform schema cache %s: %s", path, error)

    # ----- one attempt -----

    def _prepare(self, document: str, variables: dict[str, Any], operation_name: str) -> _Prepared:
        if not OPERATION_NAME.match(operation_name or ""):
            raise UsageError(
                f"operation name {operation_name!r} is invalid: the platform accepts only letters and digits"
            )
        parsed, operation, query = _checked_document(document, operation_name, tuple(sorted(variables)))
        request = GraphQLRequest(parsed, variable_values=variables or None, operation_name=operation_name)
        retryable = operation.operation == OperationType.QUERY
        return _Prepared(request, operation_name, query, variables, retryable)

    def _attempt(self, prepared: _Prepared, deadline: float) -> PlatformResult:
        remaining = deadline - self._clock()
        if remaining <= 0:
            total = self.settings.timeouts.total
            raise ServiceTimeout(f"platform timed out after {total:g} s in total ({self.url})", service=SERVICE)

        timeout = _attempt_timeout(self.settings, remaining)
        self._local.response = None
        started = time.monotonic()
        try:
            answer = self._open().execute(prepared.request, get_execution_result=True, extra_args={"timeout": timeout})
        except TransportQueryError as error:
            return self._with_errors(prepared, error)
        except TransportServerError as error:
            raise self._server_failure(error) from error
        except TransportProtocolError as error:
            raise self._protocol_failure() from error
        except TransportConnectionFailed as error:
            raise self._connection_failure(error, timeout) from error
        except TransportError as error:
            raise ServiceError(f"platform request failed: {error}", service=SERVICE) from error
        finally:
            self._log(prepared.operation, started)

        if answer.data is None:
            raise ServiceError(f"platform returned neither data nor errors for {prepared.operation}", service=SERVICE)
        return PlatformResult(
            prepared.operation, prepared.query, prepared.variables, answer.data, [], self._status()
        )

    def _open(self) -> Any:
        with self._session_lock:
            if self._session is None:
                self._session = self._client.connect_sync()
            return self._session

    def _on_response(self, response: httpx.Response) -> None:
        # Read the body here so that the error mapping can quote it even when gql does not.
        response.read()
        self._local.response = response

    def _response(self) -> httpx.Response | None:
        return getattr(self._local, "response", None)

    def _status(self) -> int | None:
        response = self._response()
        return response.status_code if response is not None else None

    def _log(self, operation: str, started: float) -> None:
        status = self._status()
        logger.debug(
            "platform %s POST %s -> %s in %.3f s",
            operation,
            self.url,
            f"HTTP {status}" if status is not None else "no answer",
            time.monotonic() - started,
        )

    def _with_errors(self, prepared: _Prepared, error: TransportQueryError) -> PlatformResult:
        errors = [_platform_error(item) for item in error.errors or []]
        messages = [item.message for item in errors] or [str(error)]
        rejected = next((message for message in messages if message in AUTH_MESSAGES), None)
        if rejected is not None:
            raise AuthError(f"platform rejected the token: {rejected}", hint=LOGIN_HINT) from error

        status = self._status()
        if status is not None and status >= 400:
            quoted = "; ".join(credentials.mask(message) for message in messages[:3])
            raise PlatformQueryError(
                f"platform rejected {prepared.operation} (HTTP {status}): {quoted}", status=status, messages=messages
            ) from error

        data = error.data if isinstance(error.data, dict) else None
        return PlatformResult(prepared.operation, prepared.query, prepared.variables, data, errors, status)

    def _server_failure(self, error: TransportServerError) -> HelpctlError | _Transient:
        status = error.code or self._status() or 0
        response = self._response()
        excerpt = _excerpt(response)
        if status == 429:
            wait = _retry_after(response)
            message = "platform rate limit reached (HTTP 429)"
            if wait is not None:
                message += f"; it asked to retry after {wait:g} s"
            return _Transient(RateLimited(message, service=SERVICE, retry_after=wait), wait)
        if status in (401, 403) or (status < 500 and AUTH_WORDS.search(excerpt)):
            return AuthError(f"platform rejected the request (HTTP {status}): {excerpt}", hint=LOGIN_HINT)
        if status == 404:
            return ServiceError(
                f"platform endpoint {self.url} returned HTTP 404 Not Found",
                service=SERVICE,
                status=404,
                hint="check platform.url in the profile",
            )
        if status >= 500:
            kind = "HTML " if _is_html(response) else "HTTP "
            message = f"platform returned {kind}{status} (proxy or load balancer): {excerpt}"
            return _Transient(ServiceError(message, service=SERVICE, status=status))
        return ServiceError(f"platform returned HTTP {status}: {excerpt}", service=SERVICE, status=status)

    def _protocol_failure(self) -> HelpctlError:
        response = self._response()
        excerpt = _excerpt(response)
        status = response.status_code if response is not None else None
        if AUTH_WORDS.search(excerpt):
            return AuthError(f"platform did not accept the request: {excerpt}", hint=LOGIN_HINT)
        return ServiceError(
            f"platform returned something that is not a GraphQL result (HTTP {status}): {excerpt}",
            service=SERVICE,
            status=status,
        )

    def _connection_failure(self, error: TransportConnectionFailed, timeout: httpx.Timeout) -> _Transient:
        cause = error.__cause__
        if isinstance(cause, httpx.ConnectTimeout):
            seconds = _seconds(timeout.connect)
            failure: HelpctlError = ServiceTimeout(
                f"platform timed out after {seconds} s while connecting ({self.url})", service=SERVICE
            )
        elif isinstance(cause, httpx.TimeoutException):
            seconds = _seconds(timeout.read)
            failure = ServiceTimeout(f"platform timed out after {seconds} s ({self.url})", service=SERVICE)
        elif isinstance(cause, httpx.ConnectError):
            failure = ServiceError(f"could not connect to the platform at {self.url}: {cause}", service=SERVICE)
        else:
            reason = cause or error
            failure = ServiceError(f"the connection to the platform at {self.url} failed: {reason}", service=SERVICE)
        return _Transient(failure)


_FACT_KEYS = ("group", "organization", "stakeholder")


class _Listing:
    """The state of one `paginate` call."""

    def __init__(self, variables: dict[str, Any], page_size: int, max_items: int) -> None:
        self.variables = variables
        self.page_size = page_size
        self.max_items = max_items
        self.items: list[dict[str, Any]] = []
        self.total: int | None = None
        self.pages = 0
        self.after: str | None = None
        self.seen: set[str] = set()
        self.first: PlatformResult | None = None
        self.errors: list[PlatformError] = []
        self.truncated = False
        self.interrupted: HelpctlError | None = None

    def next_variables(self) -> dict[str, Any]:
        size = max(1, min(self.page_size, self.max_items - len(self.items)))
        return {**self.variables, "first": size, "after": self.after}

    def add(self, result: PlatformResult, connection: Any, path: tuple[str, ...]) -> bool:
        """Take one page and return whether another page should be read."""
        if self.first is None:
            self.first = result
        self.errors += result.errors
        if not isinstance(connection, dict):
            if self.pages:
                where = ".".join(path)
                message = f"platform returned no {where} on page {self.pages + 1}"
                self.interrupted = ServiceError(message, service=SERVICE)
            return False

        self.pages += 1
        edges = [edge for edge in connection.get("edges") or [] if isinstance(edge, dict)]
        self.items += [edge["node"] for edge in edges if isinstance(edge.get("node"), dict)]
        if isinstance(connection.get("total"), int):
            self.total = connection["total"]

        page_info = connection.get("pageInfo") or {}
        cursor = page_info.get("endCursor")
        if not page_info.get("hasNextPage"):
            return False
        if len(self.items) >= self.max_items:
            self.truncated = True
            return False
        if not edges or not cursor or cursor in self.seen:
            # A repeated or missing cursor would read the same page forever.
            self.interrupted = ServiceError(f"platform repeated the page cursor {cursor!r}", service=SERVICE)
            return False
        self.seen.add(cursor)
        self.after = cursor
        return True

    def connection(self) -> Connection:
        assert self.first is not None, "paginate reads at least one page"
        return Connection(
            self.items, self.total, self.truncated, self.pages, self.first, self.errors, self.interrupted
        )


def _operation(document: DocumentNode, name: str) -> OperationDefinitionNode:
    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode) and definition.name and definition.name.value == name:
            return definition
    raise UsageError(f"the GraphQL document has no operation named {name!r}")


@functools.lru_cache(maxsize=256)
def _checked_document(
    document: str, operation_name: str, variable_names: tuple[str, ...]
) -> tuple[DocumentNode, OperationDefinitionNode, str]:
    """Parse a document and check it against the platform's limits, once per text.

    Bulk access changes send the same mutation thousands of times; parsing and checking it
    each time costs more CPU than the request itself on a loaded machine.
    """
    try:
        parsed = parse(document)
    except GraphQLError as error:
        raise UsageError(f"{operation_name} is not a valid GraphQL document: {error.message}") from error

    operation = _operation(parsed, operation_name)
    query = print_ast(parsed)
    _check_limits(parsed, operation, query, dict.fromkeys(variable_names))
    return parsed, operation, query


def _check_limits(
    document: DocumentNode, operation: OperationDefinitionNode, query: str, variables: dict[str, Any]
) -> None:
    name = operation.name.value if operation.name else "the operation"
    if len(query) > MAX_CHARACTERS:
        raise UsageError(f"{name} is {len(query)} characters long; the platform accepts at most {MAX_CHARACTERS}")

    fragments = {node.name.value: node for node in document.definitions if isinstance(node, FragmentDefinitionNode)}
    roots = _root_fields(operation.selection_set, fragments)
    if roots > MAX_ROOT_FIELDS:
        raise UsageError(f"{name} has {roots} root fields; the platform accepts at most {MAX_ROOT_FIELDS}")

    depth = _depth(operation.selection_set, fragments, frozenset())
    if depth > MAX_DEPTH:
        raise UsageError(f"{name} nests fields {depth} deep; the platform accepts at most {MAX_DEPTH}")

    declared = {definition.variable.name.value for definition in operation.variable_definitions or ()}
    undeclared = sorted(set(variables) - declared)
    if undeclared:
        raise UsageError(f"{name} sends variables it does not declare: {', '.join(undeclared)}")


def _root_fields(selection_set: SelectionSetNode, fragments: dict[str, FragmentDefinitionNode]) -> int:
    count = 0
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            count += 1
        elif isinstance(selection, InlineFragmentNode):
            count += _root_fields(selection.selection_set, fragments)
        elif isinstance(selection, FragmentSpreadNode) and selection.name.value in fragments:
            count += _root_fields(fragments[selection.name.value].selection_set, fragments)
    return count


def _depth(
    selection_set: SelectionSetNode | None, fragments: dict[str, FragmentDefinitionNode], seen: frozenset[str]
) -> int:
    """Return the nesting depth of fields. A root field alone is depth 1, and fragments count as inlined."""
    if selection_set is None:
        return 0
    deepest = 0
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            deepest = max(deepest, 1 + _depth(selection.selection_set, fragments, seen))
        elif isinstance(selection, InlineFragmentNode):
            deepest = max(deepest, _depth(selection.selection_set, fragments, seen))
        elif isinstance(selection, FragmentSpreadNode):
            name = selection.name.value
            if name in fragments and name not in seen:
                deepest = max(deepest, _depth(fragments[name].selection_set, fragments, seen | {name}))
    return deepest


def _attempt_timeout(settings: PlatformSettings, remaining: float) -> httpx.Timeout:
    """Per-attempt timeouts, shortened so that no attempt runs past the total budget."""
    read = min(settings.timeouts.read, remaining)
    connect = min(settings.timeouts.connect, remaining)
    return httpx.Timeout(read, connect=connect, read=read, write=read, pool=connect)


def _seconds(value: float | None) -> str:
    """Format a duration for a message: 0.29998 becomes "0.3", 30.0 becomes "30"."""
    return f"{round(value or 0.0, 2):g}"


def _backoff(attempt: int) -> float:
    return min(0.5 * 2 ** (attempt - 1), MAX_BACKOFF_SECONDS)


def _retry_after(response: httpx.Response | None) -> float | None:
    """Seconds from a Retry-After header, given as seconds or as an HTTP date."""
    value = response.headers.get("retry-after", "").strip() if response is not None else ""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - time.time())


def _is_html(response: httpx.Response | None) -> bool:
    if response is None:
        return False
    content_type = response.headers.get("content-type", "").lower()
    return "html" in content_type or response.text.lstrip().lower().startswith(("<html", "<!doctype"))


def _excerpt(response: httpx.Response | None) -> str:
    """Return a short, single-line, masked text of a response: the `message` of JSON, the text of HTML."""
    if response is None:
        return "no answer"
    text = response.text
    if not text.strip():
        return "empty body"
    if _is_html(response):
        text = html.unescape(re.sub(r"<[^>]+>", " ", text))
    else:
        try:
            body = json.loads(text)
        except ValueError:
            body = None
        if isinstance(body, dict) and isinstance(body.get("message"), str):
            text = body["message"]
    text = " ".join(text.split())
    if len(text) > EXCERPT_CHARS:
        text = text[: EXCERPT_CHARS - 1] + "…"
    return credentials.mask(text)


def _platform_error(item: Any) -> PlatformError:
    if not isinstance(item, dict):
        return PlatformError(str(item))
    path = item.get("path") or ()
    return PlatformError(str(item.get("message", "")), tuple(path) if isinstance(path, list) else ())


def _dig(data: Any, path: Sequence[str]) -> Any:
    for key in path:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def _facts_from(result: PlatformResult) -> dict[str, list[str]]:
    """Read the introspection response. Raises ValueError when a type is missing."""
    facts: dict[str, list[str]] = {}
    for key, member in (("group", "enumValues"), ("organization", "enumValues"), ("stakeholder", "fields")):
        found = result.field(key)
        entries = found.get(member) if isinstance(found, dict) else None
        if not isinstance(entries, list) or not entries:
            problems = "; ".join(error.message for error in result.errors) or f"no {key} type in the schema"
            raise ValueError(problems)
        facts[key] = [str(entry["name"]) for entry in entries if isinstance(entry, dict) and "name" in entry]
    return facts


def _write_private(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically with mode 0600."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, paths.PRIVATE_FILE_MODE)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


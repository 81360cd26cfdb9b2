"""The profile's typed settings. Each part of helpctl owns one section.

Times are in seconds unless a field name says otherwise. Secrets are never settings: the
only token a profile may carry is `fixed_token`, and only for a service on the loopback
interface (the sandbox's documented, public tokens).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal
from urllib.parse import urlsplit

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def is_loopback(url: str) -> bool:
    return (urlsplit(url).hostname or "") in LOOPBACK_HOSTS


def _check_url(url: str) -> str | None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"url {url!r} is not an http(s) URL"
    if parts.scheme == "http" and not is_loopback(url):
        return f"url {url!r} must use https (plain http is allowed only on 127.0.0.1)"
    return None


def _check_fixed_token(url: str, fixed_token: str | None) -> str | None:
    if fixed_token and not is_loopback(url):
        return "fixed_token is allowed only for loopback services; store real tokens with 'helpctl auth login'"
    return None


@dataclasses.dataclass
class Timeouts:
    connect: float = 5.0
    read: float = 30.0
    total: float = 60.0


@dataclasses.dataclass
class EngineerSettings:
    """The engineer who acts under this profile: the actor of every case event."""

    name: str = ""
    email: str = ""

    def validate(self) -> str | None:
        import re

        if self.email and not re.fullmatch(r"[^@\s]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}", self.email):
            return f"email {self.email!r} is not an e-mail address"
        return None


@dataclasses.dataclass
class PlatformSettings:
    url: str = "https://app.fluidattacks.com/api"
    fixed_token: str | None = None
    timeouts: Timeouts = dataclasses.field(default_factory=Timeouts)
    retries: int = 2
    page_size: int = 100
    max_items: int = 2000
    enum_cache_hours: int = 24
    web_url: str = "https://app.fluidattacks.com"

    def validate(self) -> str | None:
        if self.page_size < 1 or self.max_items < 1:
            return "page_size and max_items must be positive"
        return _check_url(self.url) or _check_fixed_token(self.url, self.fixed_token)


@dataclasses.dataclass
class GitlabSettings:
    url: str = "https://gitlab.com"
    project: str = "fluidattacks/universe"
    fixed_token: str | None = None
    timeout: float = 30.0
    max_retries: int = 5
    confidential: bool = True
    product: str = "Platform"
    title_limit: int = 255
    description_limit: int = 1_000_000
    web_url: str | None = None

    def validate(self) -> str | None:
        if self.title_limit < 20 or self.description_limit < 1000:
            return "title_limit must be at least 20 and description_limit at least 1000"
        return _check_url(self.url) or _check_fixed_token(self.url, self.fixed_token)


@dataclasses.dataclass
class NamedQuery:
    """A Logs Insights query template over the case's subjects ({email}, {group}, ...)."""

    query: str
    description: str = ""
    log_groups: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class LogsSettings:
    """CloudWatch Logs Insights. Credentials come from the standard AWS chain."""

    region: str = "us-east-1"
    aws_profile: str | None = None
    endpoint_url: str | None = None
    sandbox_credentials: bool = False
    log_groups: list[str] = dataclasses.field(default_factory=list)
    queries: dict[str, NamedQuery] = dataclasses.field(default_factory=dict)
    margin_before_minutes: int = 120
    margin_after_minutes: int = 60
    ingestion_delay_minutes: int = 5
    row_cap: int = 10000
    max_rows: int = 100000
    max_concurrent_queries: int = 4
    poll_interval: float = 1.0
    poll_interval_max: float = 5.0
    deadline: float = 300.0
    retry_budget: float = 60.0

    def validate(self) -> str | None:
        if self.sandbox_credentials and not (self.endpoint_url and is_loopback(self.endpoint_url)):
            return "sandbox_credentials is allowed only with a loopback endpoint_url"
        if self.endpoint_url:
            return _check_url(self.endpoint_url)
        return None


@dataclasses.dataclass
class MandrillSettings:
    url: str = "https://mandrillapp.com/api/1.0"
    fixed_token: str | None = None
    timeout: float = 30.0
    retention_days: int = 30
    window_days: int = 14
    searches_per_minute: int = 20
    sender: str = "help@fluidattacks.com"
    sender_name: str = "Fluid Attacks Help"

    def validate(self) -> str | None:
        return _check_url(self.url) or _check_fixed_token(self.url, self.fixed_token)


@dataclasses.dataclass
class BugsnagSettings:
    url: str = "https://api.bugsnag.com"
    web_url: str = "https://app.bugsnag.com"
    fixed_token: str | None = None
    organization_slug: str = ""
    project_slug: str = ""
    project_id: str = ""
    timeout: float = 30.0
    per_page: int = 100
    max_pages: int = 20

    def validate(self) -> str | None:
        return _check_url(self.url) or _check_fixed_token(self.url, self.fixed_token)


@dataclasses.dataclass
class MixpanelSettings:
    residency: Literal["us", "eu", "in"] = "us"
    url: str | None = None
    export_url: str | None = None
    project_id: str = ""
    service_account: str = ""
    fixed_token: str | None = None
    timeout: float = 60.0
    hourly_budget: int = 60
    window_hours: int = 24
    feature_events: dict[str, list[str]] = dataclasses.field(default_factory=dict)

    def validate(self) -> str | None:
        for url in (self.url, self.export_url):
            if url:
                problem = _check_url(url) or _check_fixed_token(url, self.fixed_token)
                if problem:
                    return problem
        if self.fixed_token and not self.url:
            return "fixed_token is allowed only for loopback services; store real tokens with 'helpctl auth login'"
        return None


@dataclasses.dataclass
class LogrocketSettings:
    url: str = "https://api.logrocket.com"
    web_url: str = "https://app.logrocket.com"
    app_id: str = ""
    fixed_token: str | None = None
    timeout: float = 30.0
    wait_seconds: float = 300.0

    def validate(self) -> str | None:
        return _check_url(self.url) or _check_fixed_token(self.url, self.fixed_token)


@dataclasses.dataclass
class CalendarSettings:
    """Office hours for response-time clocks: a fixed UTC offset, weekdays and holidays."""

    utc_offset: str = "-05:00"
    weekdays: list[int] = dataclasses.field(default_factory=lambda: [0, 1, 2, 3, 4])
    start: str = "07:00"
    end: str = "19:00"
    holidays: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class SlaSettings:
    """Response-time targets in office hours."""

    first_response_hours: float = 16.0
    next_update_hours: float = 16.0
    due_soon_hours: float = 4.0
    calendar: CalendarSettings = dataclasses.field(default_factory=CalendarSettings)


@dataclasses.dataclass
class NotifySettings:
    templates_dir: str | None = None
    sender: str | None = None
    sender_name: str | None = None
    reply_to: str | None = None
    signature: str = "Fluid Attacks Help"


@dataclasses.dataclass
class ComponentSettings:
    """An area of the product: where its code lives and the words that point at it."""

    paths: list[str] = dataclasses.field(default_factory=list)
    keywords: list[str] = dataclasses.field(default_factory=list)
    product: str | None = None


@dataclasses.dataclass
class RoutingSettings:
    head_of_product: str = ""
    incident_manager: str = ""
    bug_triager: str = ""
    experts: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    components: dict[str, ComponentSettings] = dataclasses.field(default_factory=dict)
    committers: dict[str, str] = dataclasses.field(default_factory=dict)
    commit_lookback_days: int = 180


@dataclasses.dataclass
class RuleSettings:
    name: str
    label: Literal["incident", "bug", "feature", "answered"]
    when: Any
    description: str = ""


@dataclasses.dataclass
class ClassifySettings:
    rules: list[RuleSettings] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class AccessSettings:
    """Access changes: the approval policy and how apply paces the platform.

    `second_approver_roles` are role enum values (GROUP_MANAGER, USER_MANAGER, ...) whose
    grant or change needs a second approver. A plan with more operations than
    `second_approver_above` needs one too (0 turns that rule off). Apply starts with
    `initial_concurrency` mutations in flight and adapts to the platform's 429s and errors,
    never above `max_concurrency`.
    """

    second_approver_roles: list[str] = dataclasses.field(
        default_factory=lambda: ["USER_MANAGER", "GROUP_MANAGER", "ORGANIZATION_MANAGER", "CUSTOMER_MANAGER", "ADMIN"]
    )
    second_approver_above: int = 25
    max_concurrency: int = 8
    initial_concurrency: int = 4
    rate_limit_retries: int = 30  # attempts of one operation that got HTTP 429 before it fails
    unknown_retries: int = 2  # new attempts after an unanswered one proved not applied
    settle_delay: float = 1.0  # seconds to wait before reading the state after an unanswered attempt
    max_retry_wait: float = 120.0  # longest Retry-After honoured, in seconds
    progress_interval: float = 5.0  # seconds between progress lines when not on a terminal

    def validate(self) -> str | None:
        if self.max_concurrency < 1 or not 1 <= self.initial_concurrency <= self.max_concurrency:
            return "max_concurrency must be at least 1 and initial_concurrency between 1 and max_concurrency"
        if self.second_approver_above < 0 or self.rate_limit_retries < 0 or self.unknown_retries < 0:
            return "second_approver_above, rate_limit_retries and unknown_retries must not be negative"
        if self.settle_delay < 0 or self.max_retry_wait < 0 or self.progress_interval <= 0:
            return "settle_delay and max_retry_wait must not be negative, and progress_interval must be positive"
        return None


@dataclasses.dataclass
class Profile:
    version: int = 1
    description: str = ""
    extends: str | None = None
    language: Literal["en", "es"] = "en"
    engineer: EngineerSettings = dataclasses.field(default_factory=EngineerSettings)
    platform: PlatformSettings = dataclasses.field(default_factory=PlatformSettings)
    gitlab: GitlabSettings = dataclasses.field(default_factory=GitlabSettings)
    logs: LogsSettings = dataclasses.field(default_factory=LogsSettings)
    mandrill: MandrillSettings = dataclasses.field(default_factory=MandrillSettings)
    bugsnag: BugsnagSettings = dataclasses.field(default_factory=BugsnagSettings)
    mixpanel: MixpanelSettings = dataclasses.field(default_factory=MixpanelSettings)
    logrocket: LogrocketSettings = dataclasses.field(default_factory=LogrocketSettings)
    sla: SlaSettings = dataclasses.field(default_factory=SlaSettings)
    notify: NotifySettings = dataclasses.field(default_factory=NotifySettings)
    labels: dict[str, Any] = dataclasses.field(default_factory=dict)
    routing: RoutingSettings = dataclasses.field(default_factory=RoutingSettings)
    classify: ClassifySettings = dataclasses.field(default_factory=ClassifySettings)
    access: AccessSettings = dataclasses.field(default_factory=AccessSettings)

    # Filled by the loader, not read from YAML.
    name: str = dataclasses.field(default="", init=False)
    source: str = dataclasses.field(default="", init=False)

    def validate(self) -> str | None:
        if self.version != 1:
            return f"version {self.version} is not supported by this helpctl (expected 1)"
        return None

    @property
    def is_sandbox(self) -> bool:
        return is_loopback(self.platform.url) and is_loopback(self.gitlab.url)

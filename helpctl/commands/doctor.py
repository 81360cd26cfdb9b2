"""`helpctl doctor`: check that every configured service of the profile is ready."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import typer

from helpctl import credentials, paths
from helpctl.context import App
from helpctl.errors import HelpctlError


@dataclasses.dataclass
class Check:
    service: str
    name: str
    ok: bool
    detail: str
    fix: str = ""
    # Ready, but worth knowing (a missing keyring, an optional source not configured).
    warn: bool = False


def register(app: typer.Typer) -> None:
    app.command("doctor")(doctor)


def doctor(context: typer.Context) -> None:
    """Check reachability, credentials and permissions of each service, and print what to fix."""
    application: App = context.obj
    profile = application.profile
    application.announce_profile()
    results = [_check_cases_folder()]
    results.append(_check_keyring())
    results += _check_platform(profile)
    results += _check_gitlab(profile)
    results += _check_evidence_sources(profile)
    _show(application, results)

    failed = [result for result in results if not result.ok]
    if failed:
        raise HelpctlError(f"{len(failed)} of {len(results)} checks failed", hint="apply the fixes listed above")


def _check_cases_folder() -> Check:
    root = paths.cases_dir()
    try:
        paths.ensure_private_dir(root)
    except OSError as error:
        return Check("local", "cases folder", False, f"{root}: {error.strerror}", "set HELPCTL_HOME to a writable folder")
    return Check("local", "cases folder", True, f"{root} (private, 0700)")


def _check_keyring() -> Check:
    try:
        credentials.keyring_backend()
    except credentials.KeyringUnavailable as error:
        return Check("local", "keyring", True, f"{error.message}; tokens must come from HELPCTL_<SERVICE>_TOKEN", "optional", warn=True)
    return Check("local", "keyring", True, "an OS keyring backend is available")


def _run(service: str, name: str, probe: Callable[[], str], fix: str) -> Check:
    try:
        return Check(service, name, True, probe())
    except HelpctlError as error:
        return Check(service, name, False, credentials.mask(error.message), error.hint or fix)


def _check_platform(profile) -> list[Check]:
    from helpctl import services

    found = credentials.find(profile.name, "platform", profile.platform.fixed_token)
    if found is None:
        hint = f"run 'helpctl auth login platform' or set {credentials.environment_variable('platform')}"
        return [Check("platform", "token", False, "no token", hint)]

    client = services.platform_client(profile, found.value)
    checks = [Check("platform", "token", True, f"from {found.source}")]
    me: dict = {}

    def whoami() -> str:
        me.update(client.me())
        return f"{profile.platform.url} accepted the token of {me.get('userEmail')} (role {me.get('role')})"

    unreachable_fix = "start it with 'helpctl sandbox serve'" if profile.is_sandbox else "check platform.url and renew the token"
    checks.append(_run("platform", "reachable and authenticated", whoami, unreachable_fix))
    if not checks[-1].ok:
        return checks

    def roles() -> str:
        enums = client.role_enums()
        return f"group roles: {', '.join(enums.get('group', [])) or 'unknown'}"

    checks.append(_run("platform", "role names", roles, "role names will be read as the platform documents them"))
    organizations = me.get("organizations") or []
    count = len(organizations)
    detail = f"member of {count} organization{'s' if count != 1 else ''}" if organizations else "the token's user belongs to no organization"
    checks.append(Check("platform", "permissions", bool(organizations), detail, "ask for a support role on the clients' organizations"))
    return checks


def _check_gitlab(profile) -> list[Check]:
    from helpctl import services

    found = credentials.find(profile.name, "gitlab", profile.gitlab.fixed_token)
    if found is None:
        hint = f"run 'helpctl auth login gitlab' or set {credentials.environment_variable('gitlab')}"
        return [Check("gitlab", "token", False, "no token", hint)]

    client = services.gitlab_client(profile, found.value)
    checks = [Check("gitlab", "token", True, f"from {found.source}")]
    checks.append(_run("gitlab", "reachable and authenticated", lambda: f"token of {client.current_user().get('username')}", "renew the token"))
    if not checks[-1].ok:
        return checks

    checks.append(_run("gitlab", "project", lambda: f"{client.project().get('path_with_namespace')} is reachable", "check gitlab.project"))
    if not checks[-1].ok:
        return checks

    checks.append(_run("gitlab", "labels", lambda: _labels_exist(profile, client), "create the labels or fix the profile's labels"))
    checks.append(_run("gitlab", "routing", lambda: _assignees_exist(profile, client), "fill the routing usernames in the profile"))
    return checks


def _check_evidence_sources(profile) -> list[Check]:
    """Check the probes' sources: credentials present, and a free call where the API has one.

    Mixpanel and LogRocket are not called: every Mixpanel query spends the hourly budget,
    and LogRocket has no call that costs nothing.
    """
    from helpctl import services

    checks = [_check_logs(profile)]
    for service, needed in (("mandrill", None), ("bugsnag", "project_id"), ("mixpanel", "project_id"), ("logrocket", "app_id")):
        settings = getattr(profile, service)
        if needed and not getattr(settings, needed):
            checks.append(Check(service, "configured", True, f"not configured ({service}.{needed} is empty); its probe is skipped", "optional", warn=True))
            continue
        found = credentials.find(profile.name, service, settings.fixed_token)
        if found is None:
            optional = service == "logrocket"
            detail = "no key: the sessions probe stores a link instead" if optional else "no token"
            hint = f"run 'helpctl auth login {service}' or set {credentials.environment_variable(service)}"
            checks.append(Check(service, "token", optional, detail, hint))
            continue
        checks.append(Check(service, "token", True, f"from {found.source}"))
        if service == "mandrill":
            client = services.mandrill_client(profile, found.value)
            checks.append(_run("mandrill", "reachable and authenticated", lambda: f"{profile.mandrill.url} answered {client.ping()}", "renew the key"))
    return checks


def _check_logs(profile) -> Check:
    """Where Logs Insights credentials will come from, without walking the AWS chain.

    Resolving the chain can reach the instance metadata service, so doctor only reports
    what is configured; the probe resolves the credentials when it runs.
    """
    import os

    settings = profile.logs
    if not settings.log_groups:
        return Check("logs", "configured", True, "no log groups (logs.log_groups); the logs probe is skipped", "optional", warn=True)
    if settings.sandbox_credentials:
        return Check("logs", "credentials", True, f"the sandbox's fixed keys for {settings.endpoint_url}")
    sources = []
    if settings.aws_profile:
        sources.append(f"AWS profile {settings.aws_profile!r} (logs.aws_profile)")
    if os.environ.get("AWS_PROFILE"):
        sources.append(f"AWS_PROFILE={os.environ['AWS_PROFILE']}")
    if os.environ.get("AWS_ACCESS_KEY_ID"):
        sources.append("AWS_ACCESS_KEY_ID in the environment")
    if not sources:
        return Check("logs", "credentials", False, "no AWS profile or keys configured", "set logs.aws_profile or AWS_PROFILE, and run 'aws sso login' if it uses SSO")
    return Check("logs", "credentials", True, f"{', '.join(sources)}; region {settings.region}")


def _labels_exist(profile, client) -> str:
    from helpctl.errors import PreconditionFailed

    wanted = sorted({label for labels in profile.labels.values() for label in labels})
    existing = client.label_names()
    missing = [label for label in wanted if label not in existing]
    if missing:
        raise PreconditionFailed(f"labels missing in {profile.gitlab.project}: {', '.join(missing)}")
    return f"all {len(wanted)} labels exist"


def _assignees_exist(profile, client) -> str:
    from helpctl.errors import PreconditionFailed

    routing = profile.routing
    people = {"head_of_product": routing.head_of_product, "incident_manager": routing.incident_manager, "bug_triager": routing.bug_triager}
    empty = [key for key, value in people.items() if not value]
    if empty:
        raise PreconditionFailed(f"routing.{', routing.'.join(empty)} not set")

    names = set(people.values()) | {name for experts in routing.experts.values() for name in experts}
    unknown = sorted(name for name in names if client.user_by_username(name) is None)
    if unknown:
        raise PreconditionFailed(f"GitLab users not found: {', '.join(unknown)}")
    return f"{len(names)} assignees exist"


def _status(result: Check) -> str:
    if not result.ok:
        return "FAIL"
    return "warn" if result.warn else "ok"


def _detail(result: Check) -> str:
    if result.ok:
        return result.detail
    return f"{result.detail}; fix: {result.fix}"


def _show(application: App, results: list[Check]) -> None:
    output = application.output
    if output.json_mode:
        output.json([dataclasses.asdict(result) for result in results])
        return
    rows = [(result.service, result.name, _status(result), _detail(result)) for result in results]
    output.table(["service", "check", "status", "detail"], rows)

"""Loopback stand-ins for every external service helpctl talks to.

Only the `sandbox` and `demo` commands and the tests import this package. `Sandbox` starts
the stand-ins on 127.0.0.1, on the fixed ports of `profiles/sandbox.yaml` or on free ports,
and `environment()` gives the HELPCTL_* variables that point the sandbox profile at them.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

from helpctl.sandbox.server import RunningService, Service

# name: (module:class, fixed port used by `helpctl sandbox serve`, profile URL variable, URL path)
SERVICES: dict[str, tuple[str, int, str, str]] = {
    "platform": ("helpctl.sandbox.platform_api:PlatformService", 8701, "HELPCTL_PLATFORM_URL", "/api"),
    "gitlab": ("helpctl.sandbox.gitlab_api:GitlabService", 8702, "HELPCTL_GITLAB_URL", ""),
    "logs": ("helpctl.sandbox.logs_api:LogsService", 8703, "HELPCTL_LOGS_ENDPOINT_URL", ""),
    "mandrill": ("helpctl.sandbox.mandrill_api:MandrillService", 8704, "HELPCTL_MANDRILL_URL", "/api/1.0"),
    "bugsnag": ("helpctl.sandbox.bugsnag_api:BugsnagService", 8705, "HELPCTL_BUGSNAG_URL", ""),
    "mixpanel": ("helpctl.sandbox.mixpanel_api:MixpanelService", 8706, "HELPCTL_MIXPANEL_URL", ""),
    "logrocket": ("helpctl.sandbox.logrocket_api:LogrocketService", 8707, "HELPCTL_LOGROCKET_URL", ""),
}

# Other URLs of a stand-in that the sandbox profile names (web links, a second API host).
EXTRA_URLS: dict[str, tuple[str, str]] = {
    "platform": ("HELPCTL_PLATFORM_WEB_URL", ""),
    "bugsnag": ("HELPCTL_BUGSNAG_WEB_URL", "/web"),
    "logrocket": ("HELPCTL_LOGROCKET_WEB_URL", "/app"),
}


# Services whose stand-ins exist in this version; the others are skipped by `Sandbox()`.
def available_services() -> list[str]:
    names = []
    for name, (spec, _, _, _) in SERVICES.items():
        module_name = spec.split(":")[0]
        if importlib.util.find_spec(module_name) is not None:
            names.append(name)
    return names


def _service_class(spec: str) -> type[Service]:
    module_name, class_name = spec.split(":")
    return getattr(importlib.import_module(module_name), class_name)


class Sandbox:
    """All stand-ins, sharing one seeded story. Use as a context manager."""

    def __init__(self, *, fixed_ports: bool = False, services: list[str] | None = None, **options: Any) -> None:
        self.fixed_ports = fixed_ports
        self.names = services or available_services()
        self.options = options
        self.running: dict[str, RunningService] = {}

    def start(self) -> Sandbox:
        try:
            for name in self.names:
                spec, port, _, _ = SERVICES[name]
                service = _service_class(spec)(**self.options.get(name, {}))
                self.running[name] = RunningService(service, port if self.fixed_ports else 0).start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for running in self.running.values():
            running.stop()
        self.running.clear()

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def service(self, name: str) -> Any:
        return self.running[name].service

    def url(self, name: str) -> str:
        _, _, _, path = SERVICES[name]
        return self.running[name].base_url + path

    def environment(self) -> dict[str, str]:
        """HELPCTL_* variables that aim the sandbox profile at these servers."""
        values = {SERVICES[name][2]: self.url(name) for name in self.running}
        for name, (variable, path) in EXTRA_URLS.items():
            if name in self.running:
                values[variable] = self.running[name].base_url + path
        return values

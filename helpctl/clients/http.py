"""HTTP helpers shared by the vendor clients: the httpx client, Retry-After parsing and excerpts of error pages."""

from __future__ import annotations

import html
import re
from typing import Any, Self, TypeVar

import httpx

from helpctl import __version__

USER_AGENT = f"helpctl/{__version__}"
EXCERPT_CHARS = 160
MAX_CONNECT_SECONDS = 10.0

_Default = TypeVar("_Default", float, None)


def new_client(
    timeout: float,
    transport: httpx.BaseTransport | None,
    *,
    headers: dict[str, str] | None = None,
    connect_limit: float | None = MAX_CONNECT_SECONDS,
    **options: Any,
) -> httpx.Client:
    """Create an httpx client that sends helpctl's User-Agent and does not follow redirects.

    The connect timeout is `timeout` capped at `connect_limit` seconds, or `timeout` itself
    when `connect_limit` is None. `options` go to `httpx.Client` unchanged.
    """
    connect = timeout if connect_limit is None else min(connect_limit, timeout)
    return httpx.Client(
        headers={**(headers or {}), "User-Agent": USER_AGENT},
        timeout=httpx.Timeout(timeout, connect=connect),
        transport=transport,
        follow_redirects=False,
        **options,
    )


class ClientBase:
    """Base of the vendor clients that own an httpx client in `_http`: `close` and `with` support."""

    _http: httpx.Client

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def retry_after_seconds(response: httpx.Response, default: _Default) -> float | _Default:
    """Return the response's Retry-After in seconds (at least 0), or `default` when it is not a number.

    An absent header and the HTTP-date form of Retry-After both give `default`.
    """
    try:
        return max(0.0, float(response.headers.get("retry-after", "")))
    except ValueError:
        return default


def html_excerpt(text: str) -> str:
    """Shorten an error page to its <title>, or else its text, without tags and at most EXCERPT_CHARS long."""
    title = re.search(r"<title>(.*?)</title>", text, re.IGNORECASE | re.DOTALL)
    if title:
        text = title.group(1)
    plain = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", text)).split())
    return plain[:EXCERPT_CHARS] or "(empty body)"

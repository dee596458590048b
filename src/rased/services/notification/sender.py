"""One webhook attempt over HTTP: POST, no redirects, a timeout, the SSRF guard."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

import aiohttp

from rased.services.notification.ssrf import BlockedTarget, GuardedResolver, check_host

USER_AGENT = "Rased-Webhooks/1"


@dataclass(frozen=True)
class Answer:
    """What one attempt gave: the HTTP status (0 without an answer) or an error."""

    attempted_at: datetime
    duration_ms: int
    status_code: int = 0
    error: str = ""
    retry_after_s: float | None = None

    @property
    def succeeded(self) -> bool:
        """Return whether the endpoint answered 2xx."""
        return 200 <= self.status_code < 300


def retry_after_seconds(value: str | None, now: datetime) -> float | None:
    """Return the wait a `Retry-After` header asks for (seconds or an HTTP date), if valid."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def _blocked(exc: BaseException) -> BlockedTarget | None:
    """Return the BlockedTarget behind an aiohttp error, if the guard refused the target."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, BlockedTarget):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


class WebhookSender:
    """POSTs webhook bodies; two connection pools: guarded, and open for allowed orgs."""

    def __init__(self, timeout_s: float, max_response_bytes: int = 4096) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._max_response_bytes = max_response_bytes
        self._guarded: aiohttp.ClientSession | None = None
        self._open: aiohttp.ClientSession | None = None

    def _session(self, allow_private: bool) -> aiohttp.ClientSession:
        if allow_private:
            if self._open is None:
                self._open = self._new_session(aiohttp.TCPConnector())
            return self._open
        if self._guarded is None:
            # No DNS cache: every attempt resolves and checks again (DNS rebinding).
            self._guarded = self._new_session(
                aiohttp.TCPConnector(resolver=GuardedResolver(), use_dns_cache=False)
            )
        return self._guarded

    def _new_session(self, connector: aiohttp.TCPConnector) -> aiohttp.ClientSession:
        # No proxies from the environment: the guard must see the real target.
        return aiohttp.ClientSession(
            connector=connector,
            timeout=self._timeout,
            trust_env=False,
            headers={"user-agent": USER_AGENT},
        )

    async def close(self) -> None:
        """Close both connection pools."""
        for session in (self._guarded, self._open):
            if session is not None:
                await session.close()
        self._guarded = self._open = None

    async def send(
        self, url: str, headers: dict[str, str], body: bytes, allow_private: bool
    ) -> Answer:
        """POST once; return the answer or the error, never raising for the endpoint's faults."""
        attempted_at = datetime.now(UTC)
        started = time.monotonic()

        def answer(status: int = 0, error: str = "", retry_after: float | None = None) -> Answer:
            elapsed = int((time.monotonic() - started) * 1000)
            return Answer(attempted_at, elapsed, status, error, retry_after)

        try:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError("not an http(s) URL with a host")
            if not allow_private:
                check_host(parts.hostname)
            async with self._session(allow_private).post(
                url, data=body, headers=headers, allow_redirects=False
            ) as response:
                # Read a little (a server may wait for it), keep nothing.
                await response.content.read(self._max_response_bytes)
                status = response.status
                retry_after = retry_after_seconds(
                    response.headers.get("retry-after"), datetime.now(UTC)
                )
        except BlockedTarget as exc:
            return answer(error=f"blocked target: {exc}")
        except TimeoutError:
            return answer(error="timeout")
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            blocked = _blocked(exc)
            if blocked is not None:
                return answer(error=f"blocked target: {blocked}")
            return answer(error=f"{type(exc).__name__}: {exc}"[:500])
        except asyncio.CancelledError:
            raise
        if 200 <= status < 300:
            return answer(status)
        kind = "redirect not followed" if 300 <= status < 400 else "not a 2xx answer"
        return answer(status, f"HTTP {status} ({kind})", retry_after)

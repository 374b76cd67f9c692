"""HTTP client of the central ledger (docs/ledger-api.yaml), on aiohttp.

POSTs never raise for transport or server faults: they return a `SendResult` the outbox
acts on (ok / retry / park). GETs raise `LedgerError`. aiohttp's exceptions stop here.
A 2xx reply only counts as "ok" when it echoes the record's id: a proxy or captive portal
answering 200 with a page of HTML must not make the outbox drop a record it never delivered.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import aiohttp
import structlog

from gateway.ledger.outbox import SendResult

__all__ = ["LedgerClient", "LedgerError"]
# Permits are verified by drivers.ledger.permit_codec.verify_permit (one canonical form for the gateway).

log = structlog.get_logger(__name__)

_PATHS = {"hazards": "/v1/hazards", "permit-events": "/v1/permit-events"}
# Statuses that say "not now" rather than "never": retried, never parked.
_TRANSIENT_4XX = frozenset({408, 425, 429})


class LedgerError(Exception):
    """A GET to the ledger failed: `op` on `url`, with the HTTP status if there was one."""

    def __init__(self, op: str, url: str, reason: str, status: int | None = None) -> None:
        self.op = op
        """get_permits, get_competencies ..."""
        self.url = url
        self.reason = reason
        self.status = status
        """HTTP status; 404 from get_competencies means an unknown person."""
        super().__init__(f"ledger {op} {url}: {reason}" + (f" (HTTP {status})" if status else ""))


class LedgerClient:
    """One aiohttp session to the ledger. ``async with LedgerClient(url) as c:`` or start()/close().

    timeout bounds each request as a whole; ssl_context pins a CA or client cert (mTLS).
    """

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        timeout: float = 10.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._token = token
        self._ssl = ssl_context
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> LedgerClient:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        if self._session is None:
            headers = {"Authorization": f"Bearer {self._token}"} if self._token else {}
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                headers=headers,
                connector=aiohttp.TCPConnector(ssl=self._ssl if self._ssl is not None else True),
            )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("LedgerClient used before start()")
        return self._session

    async def send(self, stream: str, key: str, body: Mapping[str, Any]) -> SendResult:
        """The outbox's send callable: route a record to its stream's endpoint."""
        path = _PATHS.get(stream)
        if path is None:
            return SendResult.park(None, f"no ledger endpoint for stream {stream!r}")
        return await self._post(path, key, body)

    async def post_hazard(self, key: str, body: Mapping[str, Any]) -> SendResult:
        return await self._post(_PATHS["hazards"], key, body)

    async def post_permit_event(self, key: str, body: Mapping[str, Any]) -> SendResult:
        return await self._post(_PATHS["permit-events"], key, body)

    async def _post(self, path: str, key: str, body: Mapping[str, Any]) -> SendResult:
        url = self.base_url + path
        try:
            async with self._http().post(url, json=dict(body), headers={"Idempotency-Key": key}) as resp:
                text = await resp.text()
                status = resp.status
                retry_after = _retry_after(resp.headers.get("Retry-After"))
        except TimeoutError as exc:
            return SendResult.retry(f"timeout after {self.timeout} s ({type(exc).__name__})")
        except aiohttp.ClientError as exc:
            return SendResult.retry(f"{type(exc).__name__}: {exc}")
        except OSError as exc:
            return SendResult.retry(f"{type(exc).__name__}: {exc}")
        if status in (200, 201):
            try:
                echoed = json.loads(text).get("id")
            except (ValueError, AttributeError):
                echoed = None
            if echoed != key:
                return SendResult.retry(f"HTTP {status} without the record's id: not a ledger reply?", status)
            return SendResult.ok(status)
        if status >= 500 or status in _TRANSIENT_4XX:
            return SendResult.retry(f"HTTP {status}: {_excerpt(text)}", status, retry_after)
        # Any other status (4xx, and 3xx/other 2xx that no ledger sends) will not get better by resending.
        return SendResult.park(status, _excerpt(text))

    async def get_permits(self, site: str, zone: str | None = None) -> list[dict[str, Any]]:
        """Signed permits of a site (and zone); verify each with `verify_permit` before use."""
        params = {"site": site} | ({"zone": zone} if zone else {})
        doc = await self._get("get_permits", "/v1/permits", params)
        permits = doc.get("permits") if isinstance(doc, dict) else None
        if not isinstance(permits, list) or not all(isinstance(p, dict) for p in permits):
            raise LedgerError("get_permits", self.base_url + "/v1/permits", "reply has no list of permits")
        return permits

    async def get_competencies(self, person: str) -> dict[str, Any]:
        """A person's competencies; LedgerError with status 404 for an unknown person."""
        path = f"/v1/people/{quote(person, safe='')}/competencies"
        doc = await self._get("get_competencies", path, {})
        if not isinstance(doc, dict):
            raise LedgerError("get_competencies", self.base_url + path, "reply is not an object")
        return doc

    async def _get(self, op: str, path: str, params: Mapping[str, str]) -> Any:
        url = self.base_url + path
        try:
            async with self._http().get(url, params=dict(params)) as resp:
                if resp.status != 200:
                    raise LedgerError(op, url, _excerpt(await resp.text()), resp.status)
                return await resp.json()
        except TimeoutError as exc:
            raise LedgerError(op, url, f"timeout after {self.timeout} s") from exc
        except (aiohttp.ClientError, ValueError, OSError) as exc:
            raise LedgerError(op, url, f"{type(exc).__name__}: {exc}") from exc


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None  # HTTP-date form: ignored, the normal backoff applies


def _excerpt(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."

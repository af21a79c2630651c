"""A pooled HTTP client for the AeroAlpes REST API (one per adapter process, shared by all RPCs)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import urllib3
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    MaxRetryError,
    NewConnectionError,
    ReadTimeoutError,
)

DEADLINE_MARGIN = 0.05  # seconds


class AeroAlpesUnreachable(ConnectionError):
    """No connection to AeroAlpes (refused, unknown host, connect timeout, connection reset)."""


class AeroAlpesTimeout(TimeoutError):
    """AeroAlpes accepted the request but did not answer in time."""


@dataclass(frozen=True, slots=True)
class RestResponse:
    status: int
    body: Any  # parsed JSON, or None when the body was not JSON
    text: str


class AeroAlpesRest:
    """``POST /vuelos/reserva`` and ``GET /vuelos/reserva/<id>`` over a keep-alive connection pool.

    Connection errors are retried once (the request never reached the server); a POST is never
    re-sent after it may have been received. Each request carries ``X-Request-Timeout``: the seconds
    left of the caller's deadline, which bound AeroAlpes's retries of its store.
    """

    def __init__(self, base_url: str, *, pool_size: int = 16) -> None:
        self.base_url = base_url.rstrip("/")
        self._pool = urllib3.PoolManager(
            num_pools=4,
            maxsize=pool_size,
            block=False,
            retries=urllib3.Retry(total=1, connect=1, read=0, status=0, other=0, redirect=0),
            headers={"Accept": "application/json", "User-Agent": "aeroalpes-adapter"},
        )

    def _request(self, method: str, path: str, timeout: float, body: bytes | None = None) -> RestResponse:
        url = f"{self.base_url}{path}"
        # AeroAlpes stops retrying its store a little before we stop waiting: its 503 arrives in time.
        headers = {"X-Request-Timeout": f"{max(0.001, timeout - DEADLINE_MARGIN):.3f}"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        try:
            response = self._pool.request(
                method,
                url,
                body=body,
                headers=headers,
                timeout=urllib3.Timeout(total=timeout),
                preload_content=True,
            )
        except MaxRetryError as exc:
            reason = exc.reason
            if isinstance(reason, ReadTimeoutError):
                raise AeroAlpesTimeout(
                    f"AeroAlpes at {self.base_url} did not answer within {timeout:.3g}s"
                ) from None
            if isinstance(reason, NewConnectionError):  # (a subclass of ConnectTimeoutError)
                raise AeroAlpesUnreachable(
                    f"AeroAlpes at {self.base_url} is unreachable ({reason})"
                ) from None
            if isinstance(reason, ConnectTimeoutError):
                raise AeroAlpesUnreachable(
                    f"AeroAlpes at {self.base_url} is unreachable (connect timeout)"
                ) from None
            raise AeroAlpesUnreachable(f"AeroAlpes at {self.base_url} is unreachable ({reason})") from None
        except ReadTimeoutError:
            raise AeroAlpesTimeout(
                f"AeroAlpes at {self.base_url} did not answer within {timeout:.3g}s"
            ) from None
        except HTTPError as exc:
            raise AeroAlpesUnreachable(f"AeroAlpes at {self.base_url}: {type(exc).__name__}: {exc}") from None
        text = response.data.decode("utf-8", errors="replace")
        try:
            parsed: Any = json.loads(text)
        except ValueError:
            parsed = None
        return RestResponse(status=response.status, body=parsed, text=text)

    def crear_reserva(self, cuerpo: dict[str, Any], timeout: float) -> RestResponse:
        return self._request("POST", "/vuelos/reserva", timeout, json.dumps(cuerpo).encode())

    def consultar_reserva(self, reserva_id: str, timeout: float) -> RestResponse:
        return self._request("GET", f"/vuelos/reserva/{quote(reserva_id, safe='')}", timeout)

    def close(self) -> None:
        self._pool.clear()

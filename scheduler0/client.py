"""A small synchronous client of the scheduler0 HTTP API (CLI, console, scripts).

It speaks the envelope: ``data`` on success; otherwise the node's error is
raised as the matching ``Scheduler0Error`` subclass. ``Unreachable`` means no
answer at all.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from scheduler0.errors import FieldError, Scheduler0Error, error_from_dict
from scheduler0.terminal import printable
from scheduler0.tls import client_context


class Unreachable(Scheduler0Error):
    code = "unreachable"


def unreachable(base_url: str, exc: httpx.HTTPError) -> Unreachable:
    message = f"cannot reach {base_url}: {exc or type(exc).__name__}"
    if "CERTIFICATE_VERIFY_FAILED" in str(exc):
        message += (
            " (the node's certificate is not trusted: set TLSCAFile, or"
            " SCHEDULER0_TLS_CA_FILE, to the CA that signed it)"
        )
    return Unreachable(message)


class ApiClient:
    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        api_secret: str | None = None,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 10.0,
        ca_file: Path | str | None = None,
    ) -> None:
        """``ca_file`` (TLSCAFile) verifies an https node; without it the system
        store does."""
        url = base_url.strip().rstrip("/")
        if "://" not in url:
            url = f"http://{url}"
        self.base_url = url
        headers = {}
        auth: tuple[str, str] | None = None
        if api_key and api_secret:
            headers = {"x-api-key": api_key, "x-secret-key": api_secret}
        elif username and password:
            headers = {"x-peer": "cmd"}
            auth = (username, password)
        self._http = httpx.Client(
            base_url=f"{url}/api/v1",
            headers=headers,
            auth=auth,
            timeout=timeout,
            verify=client_context(ca_file),
        )

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise unreachable(self.base_url, exc) from exc
        try:
            envelope = response.json()
        except ValueError:
            raise self._refusal(response) from None
        if response.is_success and isinstance(envelope, dict) and envelope.get("success"):
            return envelope.get("data")
        raise self._refusal(response, envelope)

    def download(self, path: str, out: Path, *, timeout: float | None = None) -> httpx.Headers:
        """Stream a binary answer (``GET path``) into the file ``out``; return its
        headers. An error answer raises as ``request`` does."""
        try:
            with self._http.stream(
                "GET", path, timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT
            ) as response:
                if not response.is_success:
                    response.read()
                    self._raise_for(response)
                with open(out, "wb") as f:
                    for chunk in response.iter_bytes(1 << 20):
                        f.write(chunk)
                return response.headers
        except httpx.HTTPError as exc:
            raise unreachable(self.base_url, exc) from exc

    def _raise_for(self, response: httpx.Response) -> None:
        try:
            envelope = response.json()
        except ValueError:
            raise self._refusal(response) from None
        raise self._refusal(response, envelope)

    def _refusal(self, response: httpx.Response, envelope: Any = None) -> Scheduler0Error:
        """The error an answer stands for. Its text is shown to people (CLI,
        console): control and bidi characters come escaped."""
        if envelope is None:
            text = f"HTTP {response.status_code} from {self.base_url}: {response.text[:200]}"
            return Scheduler0Error(printable(text))
        error = envelope.get("error") if isinstance(envelope, dict) else None
        if not isinstance(error, dict):
            return Scheduler0Error(f"HTTP {response.status_code}: {envelope!r:.200}")
        found = error_from_dict(error)
        details = [
            FieldError(printable(d.field), printable(d.message), d.index) for d in found.details
        ]
        return type(found)(printable(found.message), details, found.omitted)

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params={k: v for k, v in params.items() if v is not None})

    def post(self, path: str, body: Any = None) -> Any:
        return self.request("POST", path, json=body)

    def put(self, path: str, body: Any) -> Any:
        return self.request("PUT", path, json=body)

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)

    def pages(
        self,
        path: str,
        key: str,
        *,
        offset: int = 0,
        page_size: int = 1000,
        **params: Any,
    ) -> Iterator[dict[str, Any]]:
        """Every page of a list route (``{"total", "offset", "limit", key: [...]}``).

        Starts at ``offset`` and stops after a short or empty page, or once
        ``total`` rows were passed.
        """
        while True:
            page = self.get(path, limit=page_size, offset=offset, **params)
            if not isinstance(page, dict):
                raise Scheduler0Error(f"GET {path}: expected a page object, got {page!r:.200}")
            yield page
            items = page.get(key) or []
            offset += len(items)
            total, limit = page.get("total"), page.get("limit")
            short = len(items) < (limit if isinstance(limit, int) else page_size)
            if not items or short or (isinstance(total, int) and offset >= total):
                return

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

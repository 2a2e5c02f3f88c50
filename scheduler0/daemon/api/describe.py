"""What each route of the table declares besides its handler: who may call it
(its ``Permission``: operator or client scope, and the project it acts on),
the query parameters and body it reads, what it answers and which errors it
may add to those its inputs imply. ``app.py`` builds the routes from these
declarations, the handlers' input helpers refuse to read anything undeclared
(``http.Declared``), and ``openapi.py`` writes the OpenAPI document from them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NamedTuple

from pydantic import BaseModel

from scheduler0.daemon.api.auth import Access, On, Permission
from scheduler0.daemon.api.http import CONSISTENCY, Declared, Handler, Param


@dataclass(frozen=True)
class Body:
    """A JSON request body validated by ``model`` (snake_case documented;
    camelCase aliases accepted)."""

    model: type[BaseModel]
    many: bool = False
    """One object or a non-empty array of them (``POST /jobs``)."""
    required: bool = True
    max_items: int | None = None
    """For ``many``: the node's MaxJobsPerRequest when the document is built."""


@dataclass(frozen=True)
class Reply:
    """The success answer: ``{"success": true, "data": <model>}`` with ``status``."""

    model: type[BaseModel] | None
    status: int = 200
    many: bool = False
    """Mirrors a ``many`` body: one object for one, an array for an array."""
    media_type: str = "application/json"
    enveloped: bool = True
    """False for the documents served as they are (the OpenAPI document, the docs page)."""
    description: str = "OK"


class RouteSpec(NamedTuple):
    path: str
    methods: tuple[str, ...]
    endpoint: Handler
    permission: Permission
    summary: str
    reply: Reply
    query: tuple[Param, ...] = ()
    body: Body | None = None
    errors: tuple[int, ...] = ()
    """Statuses the route may answer beyond those its declaration implies."""

    @property
    def access(self) -> Access:
        return self.permission.access

    @property
    def path_params(self) -> tuple[str, ...]:
        return tuple(re.findall(r"{(\w+)}", self.path))

    def declared(self) -> Declared:
        return Declared(self.query, self.body is not None)

    def error_statuses(self) -> tuple[int, ...]:
        """Every error status the route may answer, from what it declares."""
        # 429: too many of the caller's requests already wait for their share
        # of the work off the event loop (``api/turns.py``).
        found = set(self.errors) | {429}
        if self.access is not Access.PUBLIC:
            # 403: a kind or scope too weak; 503: a node still catching up
            # cannot check a key yet.
            found |= {401, 403, 503}
        if self.permission.on is On.JOB_ITEMS:
            found.add(422)  # an item's project outside the caller's
        if self.path_params:
            found |= {404, 422}
        if self.query:
            found.add(422)
        if CONSISTENCY in self.query:
            found.add(503)
        if self.body is not None:
            found |= {400, 408, 413, 415, 422}
        if set(self.methods) - {"GET"}:
            found.add(503)  # a write needs a quorum
        return tuple(sorted(found))

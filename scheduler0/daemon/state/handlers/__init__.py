"""Command handlers, one module per domain; importing this package registers
every one of them (``state/apply.py``: ``@handles``)."""

from scheduler0.daemon.state.handlers import accounts, audit, cluster, firing, jobs

__all__ = ["accounts", "audit", "cluster", "firing", "jobs"]

"""Command handlers, one module per domain; importing this package registers
every one of them (``state/apply.py``: ``@handles``)."""

from scheduler0.daemon.state.handlers import accounts, audit, cluster, executors, firing, jobs

__all__ = ["accounts", "audit", "cluster", "executors", "firing", "jobs"]

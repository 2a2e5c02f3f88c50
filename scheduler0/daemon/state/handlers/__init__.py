"""Command handlers, one module per domain; importing this package registers
every one of them (``state/apply.py``: ``@handles``)."""

from scheduler0.daemon.state.handlers import accounts, cluster, executors, firing, jobs

__all__ = ["accounts", "cluster", "executors", "firing", "jobs"]

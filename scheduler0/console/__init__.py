"""The Textual console: a client of any node's HTTP API, never of the daemon.

Modules: ``source`` (the records and the ``ConsoleSource`` seam), ``http_source``
(that seam over ``scheduler0.client.ApiClient``), ``app`` (``create_console``),
``command`` (the ``scheduler0 console`` options). Importing this package loads
neither textual nor the daemon; ``command`` loads textual only when it runs.
"""

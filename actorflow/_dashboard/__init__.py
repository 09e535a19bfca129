"""The live web dashboard of a running graph, and one view of a graph spread over
processes (see ``docs/howto/dashboard.md``).

Nothing here is imported until a system is asked for a dashboard or has remote links;
hypercorn and starlette (the ``dashboard`` extra) only when a dashboard is served.
"""

from __future__ import annotations

from ._address import DashboardError, bind, parse_address, require_extra

__all__ = ["DashboardError", "bind", "parse_address", "require_extra"]

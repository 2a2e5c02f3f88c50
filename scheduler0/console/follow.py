"""Whether the execution log follows its newest rows, and what it says when not.

The log is newest first. It follows while its cursor is on the top row and the
view is scrolled to the top: each refresh then puts the newest row there. Once
the operator moves away (cursor down, or the view scrolled), the rows stay
where they are and the log counts the rows newer than the newest it showed
then, to say "N newer rows — press End"; End (or going back to the top row)
follows again. Row ids grow with time, so "newer" is "a larger id".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass
class FollowState:
    following: bool = True
    anchor: int | None = None
    """The newest row id shown when the operator moved away."""
    newer: int = 0
    """Rows newer than ``anchor`` in the last refresh."""
    capped: bool = False
    """Every row of the last refresh was newer: there may be more than ``newer``."""

    def observe(self, at_top: bool, shown_ids: Sequence[int]) -> None:
        """Before a refresh lands: where the operator is, and the ids on screen."""
        if self.following and not at_top:
            self.following = False
            self.anchor = max(shown_ids, default=None)
        elif not self.following and at_top:
            self.resume()

    def landed(self, ids: Sequence[int]) -> None:
        """A refresh with these row ids landed: count the newer ones."""
        if self.following or self.anchor is None:
            self.newer, self.capped = 0, False
            return
        anchor = self.anchor
        self.newer = sum(1 for row_id in ids if row_id > anchor)
        self.capped = bool(ids) and self.newer == len(ids)

    def resume(self) -> None:
        self.following, self.anchor, self.newer, self.capped = True, None, 0, False

    def banner(self) -> str:
        """What the log's border says: nothing while following or nothing newer."""
        if self.following or not self.newer:
            return ""
        count = f"{self.newer}+" if self.capped else str(self.newer)
        rows = "row" if self.newer == 1 and not self.capped else "rows"
        return f"{count} newer {rows} — press End"

"""Modal forms that save through the source and show the node's validation
errors under the field they name (``error.details[].field``)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any, Generic, TypeVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen
from textual.timer import Timer
from textual.widget import Widget
from textual.widgets import Button, Collapsible, Input, Label, Select

from scheduler0.console.source import POLICY_FIELDS, ConsoleSource, Job, JobDraft, Project
from scheduler0.errors import Scheduler0Error
from scheduler0.models import CATCHUPS, OVERLAPS

T = TypeVar("T")

FORM_CSS = """
FormScreen { align: center middle; }
FormScreen #form { width: 80; height: auto; max-height: 90%; border: thick $primary;
                   background: $surface; padding: 0 1; }
FormScreen #form-title { text-style: bold; margin-bottom: 1; }
FormScreen .field-label { margin-top: 1; }
FormScreen .field-error { color: $error; height: auto; }
FormScreen .field-error.-empty { display: none; }
FormScreen #buttons { height: auto; margin-top: 1; align-horizontal: right; }
FormScreen #buttons Button { margin-left: 1; }
FormScreen .field-row { height: auto; }
FormScreen .field-cell { width: 1fr; height: auto; margin-right: 1; }
"""


def dom_name(field: str) -> str:
    """A field's name as a widget id: ``retry.attempts`` -> ``retry-attempts``."""
    return field.replace(".", "-")


class FormScreen(ModalScreen[T], Generic[T]):
    """Fields with an error line under each. Save runs ``submit`` in a thread
    worker, which posts ``Saved`` (the form closes with the result) or
    ``Rejected`` (the errors are shown and the form stays)."""

    DEFAULT_CSS = FORM_CSS
    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="form.cancel"),
        Binding("ctrl+s", "save", "Save", id="form.save"),
    ]
    heading = ""

    class Saved(Message):
        def __init__(self, result: Any) -> None:
            super().__init__()
            self.result = result

    class Rejected(Message):
        def __init__(self, error: Scheduler0Error) -> None:
            super().__init__()
            self.error = error

    def __init__(self, source: ConsoleSource) -> None:
        super().__init__()
        self.source = source

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="form"):
            yield Label(self.heading, id="form-title")
            yield Label("", id="error-form", classes="field-error -empty")
            yield from self.fields()
            with Horizontal(id="buttons"):
                yield Button("Save", variant="primary", id="save")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        # The first field the user can change, not the scrolling container.
        for widget in self.query("Input, Select"):
            if not widget.disabled:
                widget.focus()
                break

    def fields(self) -> Iterator[Widget]:
        """The field widgets, each from ``field``."""
        raise NotImplementedError

    def field(self, name: str, label: str, widget: Widget) -> Iterator[Widget]:
        """Label, widget (``#field-<name>``) and error line (``#error-<name>``),
        ``name`` as the node names the field in its errors (``dom_name``)."""
        widget.id = f"field-{dom_name(name)}"
        yield Label(label, classes="field-label")
        yield widget
        yield Label("", id=f"error-{dom_name(name)}", classes="field-error -empty")

    def cell(self, name: str, label: str, widget: Widget) -> Widget:
        """One ``field`` as a column of a ``Horizontal`` row."""
        return Vertical(*self.field(name, label, widget), classes="field-cell")

    def values(self) -> dict[str, Any]:
        """The fields' values, read on the UI thread."""
        raise NotImplementedError

    def submit(self, values: dict[str, Any]) -> Any:
        """Save ``values`` through the source (runs in a worker thread)."""
        raise NotImplementedError

    def action_cancel(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#cancel")
    def _cancel_pressed(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#save")
    @on(Input.Submitted)
    def action_save(self) -> None:
        self.query_one("#save", Button).disabled = True
        self._show_errors({}, "")
        self._save(self.values())

    @work(thread=True, exit_on_error=False, group="form")
    def _save(self, values: dict[str, Any]) -> None:
        try:
            result = self.submit(values)
        except Scheduler0Error as exc:
            self.post_message(self.Rejected(exc))
        except Exception as exc:  # a bad answer must not take the console down
            self.post_message(self.Rejected(Scheduler0Error(f"{type(exc).__name__}: {exc}")))
        else:
            self.post_message(self.Saved(result))

    def on_form_screen_saved(self, message: Saved) -> None:
        self.dismiss(message.result)

    def on_form_screen_rejected(self, message: Rejected) -> None:
        self.query_one("#save", Button).disabled = False
        by_field: dict[str, list[str]] = {}
        for detail in message.error.details:
            by_field.setdefault(detail.field, []).append(detail.message)
        unplaced = [f for f in by_field if not self.query(f"#error-{dom_name(f)}")]
        general = message.error.message if unplaced or not by_field else ""
        self._show_errors(by_field, general)
        self.errors_shown(set(by_field))

    def errors_shown(self, fields: set[str]) -> None:
        """Hook: the node refused these fields (a form may reveal them)."""

    def _show_errors(self, by_field: dict[str, list[str]], general: str) -> None:
        by_dom = {dom_name(f): messages for f, messages in by_field.items()}
        for label in self.query(".field-error").results(Label):
            name = (label.id or "").removeprefix("error-")
            text = general if name == "form" else "; ".join(by_dom.get(name, []))
            label.update(text)
            label.set_class(not text, "-empty")


PREVIEW_RUNS = 5
PREVIEW_DELAY = 0.4
"""Seconds without typing before the preview asks the node: one request per
pause, not one per key."""
PREVIEW_HINT = "The next runs show here as you type a schedule."


def runs_text(runs: Sequence[str]) -> str:
    """Local RFC 3339 times as lines: ``Fri 2024-03-29 09:00:00 +01:00``."""
    if not runs:
        return "No run ahead."
    lines = []
    for run in runs:
        moment = datetime.fromisoformat(run)
        lines.append(f"{moment:%a %Y-%m-%d %H:%M:%S} {moment.isoformat()[-6:]}")
    return "Next runs:\n" + "\n".join(lines)


class JobForm(FormScreen[Job | None]):
    """Create a job, or edit one (its project cannot change). Under the
    timezone, the node's preview of the next runs follows the typing."""

    DEFAULT_CSS = """
    JobForm #schedule-preview { color: $text-muted; height: auto; margin-top: 1; }
    JobForm #schedule-preview.-failed { color: $error; }
    JobForm #policies { margin-top: 1; padding: 0; }
    JobForm #policies Contents { padding: 0 0 0 1; }
    JobForm .policy-hint { color: $text-muted; }
    """

    class Previewed(Message):
        """A preview for the schedule ``asked`` (spec, timezone)."""

        def __init__(self, asked: tuple[str, str], text: str, failed: bool) -> None:
            super().__init__()
            self.asked = asked
            self.text = text
            self.failed = failed

    def __init__(
        self,
        source: ConsoleSource,
        projects: Sequence[Project],
        job: Job | None = None,
        project_id: int | None = None,
    ) -> None:
        super().__init__(source)
        self.projects = list(projects)
        self.job = job
        self.project_id = job.project_id if job else project_id
        self.heading = f"Edit job {job.id}" if job else "New job"
        self._preview_timer: Timer | None = None

    def on_mount(self) -> None:
        super().on_mount()
        self._preview()

    @on(Input.Changed, "#field-spec, #field-timezone")
    def _schedule_changed(self) -> None:
        if self._preview_timer is not None:
            self._preview_timer.stop()
        self._preview_timer = self.set_timer(PREVIEW_DELAY, self._preview)

    def _asked(self) -> tuple[str, str]:
        return (
            self.query_one("#field-spec", Input).value,
            self.query_one("#field-timezone", Input).value,
        )

    def _preview(self) -> None:
        asked = self._asked()
        if not asked[0].strip():
            self._show_preview(PREVIEW_HINT, failed=False)
        else:
            self._fetch_preview(asked)

    @work(thread=True, exit_on_error=False, group="preview")
    def _fetch_preview(self, asked: tuple[str, str]) -> None:
        try:
            runs = self.source.preview_schedule(*asked, PREVIEW_RUNS)
        except Scheduler0Error as exc:
            text = "; ".join(f"{d.field}: {d.message}" for d in exc.details) or exc.message
            self.post_message(self.Previewed(asked, text, failed=True))
        except Exception as exc:  # a bad answer must not take the console down
            self.post_message(self.Previewed(asked, f"{type(exc).__name__}: {exc}", True))
        else:
            self.post_message(self.Previewed(asked, runs_text(runs), failed=False))

    def on_job_form_previewed(self, message: Previewed) -> None:
        if message.asked == self._asked():  # else a newer preview is on its way
            self._show_preview(message.text, message.failed)

    def _show_preview(self, text: str, failed: bool) -> None:
        label = self.query_one("#schedule-preview", Label)
        label.update(Text(text))  # the node's message, not markup
        label.set_class(failed, "-failed")

    def fields(self) -> Iterator[Widget]:
        job = self.job
        options = [(f"{p.id} {p.name}", p.id) for p in self.projects]
        known = {p.id for p in self.projects}
        project = Select(
            options,
            prompt="choose a project",
            value=self.project_id if self.project_id in known else Select.NULL,
            disabled=job is not None,
        )
        yield from self.field("project_id", "Project", project)
        spec = Input(job.spec if job else "", placeholder="*/5 * * * *  or  @every 10s")
        yield from self.field("spec", "Schedule (cron spec)", spec)
        timezone = Input(job.timezone if job else "", placeholder="UTC")
        yield from self.field("timezone", "Timezone", timezone)
        yield Label(PREVIEW_HINT, id="schedule-preview")
        callback = Input(job.callback_url if job else "", placeholder="https://example.com/hook")
        yield from self.field("callback_url", "Callback URL", callback)
        yield from self.field("data", "Data (sent with each call)", Input(job.data if job else ""))
        name = Input((job.name or "") if job else "", placeholder="optional, unique in the project")
        yield from self.field("name", "Name", name)
        labels = Input(job.labels_text if job else "", placeholder="team=ops env=prod")
        yield from self.field("labels", "Labels (key=value, space separated)", labels)
        yield self.policies()

    def policies(self) -> Collapsible:
        """The per-job policies, folded away unless the job sets one. A blank
        field (or select) is the node's default and is not sent."""
        had = dict(self.job.policies) if self.job else {}

        def text(name: str, hint: str) -> Input:
            return Input(had.get(name, ""), placeholder=hint)

        def choice(name: str, options: Sequence[str], default: str) -> Select[str]:
            value = had.get(name, "")
            return Select(
                [(o, o) for o in options],
                prompt=f"default ({default})",
                value=value if value in options else Select.NULL,
            )

        rows: list[list[Widget]] = [
            [
                self.cell("overlap", "Overlap", choice("overlap", OVERLAPS, "allow")),
                self.cell("catchup", "Catch-up", choice("catchup", CATCHUPS, "latest")),
                self.cell(
                    "catchup_window_seconds",
                    "Catch-up window s",
                    text("catchup_window_seconds", "node's grace"),
                ),
            ],
            [
                self.cell("retry.attempts", "Retries", text("retry.attempts", "node's")),
                self.cell(
                    "retry.initial_seconds",
                    "First delay s",
                    text("retry.initial_seconds", "node's"),
                ),
                self.cell("retry.multiplier", "Multiplier", text("retry.multiplier", "2")),
            ],
            [
                self.cell("retry.cap_seconds", "Delay cap s", text("retry.cap_seconds", "node's")),
                self.cell("retry.jitter", "Retry jitter 0-1", text("retry.jitter", "0")),
                self.cell("timeout_seconds", "Timeout s", text("timeout_seconds", "node's")),
            ],
            [
                self.cell("start_at", "Start at", text("start_at", "2026-03-01T09:00:00Z")),
                self.cell("end_at", "End at", text("end_at", "RFC 3339 with offset")),
            ],
            [
                self.cell("jitter_seconds", "Jitter s", text("jitter_seconds", "0")),
                self.cell("max_runs", "Max runs", text("max_runs", "no limit")),
                self.cell(
                    "pause_after_failures",
                    "Pause after failures",
                    text("pause_after_failures", "never"),
                ),
            ],
        ]
        children: list[Widget] = [
            Label(
                "Blank: the default. Clear a field to return it to its default.",
                classes="policy-hint",
            ),
            Label("", id="error-retry", classes="field-error -empty"),
            *(Horizontal(*row, classes="field-row") for row in rows),
        ]
        title = "Policies" + (f" ({len(had)} set)" if had else "")
        return Collapsible(*children, title=title, collapsed=not had, id="policies")

    def errors_shown(self, fields: set[str]) -> None:
        refused = {f.partition(".")[0] for f in fields}
        if refused & {f.partition(".")[0] for f in POLICY_FIELDS}:
            self.query_one("#policies", Collapsible).collapsed = False

    def policy_texts(self) -> tuple[tuple[str, str], ...]:
        """Every policy field's text ('' when blank or the select is on its default)."""
        texts = []
        for name in POLICY_FIELDS:
            widget = self.query_one(f"#field-{dom_name(name)}")
            if isinstance(widget, Select):
                value = widget.value
                texts.append((name, value if isinstance(value, str) else ""))
            elif isinstance(widget, Input):
                texts.append((name, widget.value))
        return tuple(texts)

    def values(self) -> dict[str, Any]:
        project = self.query_one("#field-project_id", Select).value
        values: dict[str, Any] = {
            name: self.query_one(f"#field-{name}", Input).value
            for name in ("spec", "timezone", "callback_url", "data", "name", "labels")
        }
        values["project_id"] = project if isinstance(project, int) else None
        values["policies"] = self.policy_texts()
        values["had"] = frozenset(dict(self.job.policies) if self.job else ())
        return values

    def submit(self, values: dict[str, Any]) -> Job:
        draft = JobDraft(**values)
        if self.job is not None:
            return self.source.update_job(self.job.id, draft)
        return self.source.create_job(draft)


class ProjectForm(FormScreen[Project | None]):
    heading = "New project"

    def fields(self) -> Iterator[Widget]:
        yield from self.field("name", "Name", Input(placeholder="unique name"))
        yield from self.field("description", "Description", Input())

    def values(self) -> dict[str, Any]:
        return {n: self.query_one(f"#field-{n}", Input).value for n in ("name", "description")}

    def submit(self, values: dict[str, Any]) -> Project:
        return self.source.create_project(values["name"], values["description"])


class BackfillForm(FormScreen[dict[str, Any] | None]):
    """Backfill a job: the range of its past slots to fire once each (RFC 3339
    with offset, ``to`` prefilled with now). The node's 422s show under the
    field they name; the result is the node's answer."""

    def __init__(self, source: ConsoleSource, job: Job, now: str) -> None:
        super().__init__(source)
        self.job = job
        self.now = now
        self.heading = f"Backfill job {job.id} ({job.spec})"

    def fields(self) -> Iterator[Widget]:
        yield from self.field(
            "from", "From (RFC 3339)", Input(placeholder="e.g. 2026-03-01T00:00:00Z")
        )
        yield from self.field("to", "To (RFC 3339; later than now is now)", Input(self.now))

    def values(self) -> dict[str, Any]:
        return {n: self.query_one(f"#field-{n}", Input).value.strip() for n in ("from", "to")}

    def submit(self, values: dict[str, Any]) -> dict[str, Any]:
        return self.source.backfill_job(self.job.id, values["from"], values["to"])

"""The ``labelmill`` command. Every command that touches a database takes ``--db URL``
(default: ``LABELMILL_DATABASE_URL``, else SQLite in ``LABELMILL_DATA_DIR``) and works
without a running server. Errors are one line on stderr and a non-zero exit."""

from __future__ import annotations

import csv
import json
import os
import secrets
import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer

from labelmill import __version__

app = typer.Typer(
    help="labelmill: self-hosted data labeling. Start with `labelmill demo`.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
user_app = typer.Typer(help="Manage users.", no_args_is_help=True)
token_app = typer.Typer(help="Manage API tokens.", no_args_is_help=True)
member_app = typer.Typer(help="Manage project members.", no_args_is_help=True)
project_app = typer.Typer(help="Manage projects.", no_args_is_help=True)
app.add_typer(user_app, name="user")
app.add_typer(token_app, name="token")
app.add_typer(member_app, name="member")
app.add_typer(project_app, name="project")

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db", help="Database URL (default: LABELMILL_DATABASE_URL, else SQLite in the data directory)."
    ),
]
MediaOption = Annotated[
    str | None,
    typer.Option(
        "--media",
        metavar="URL",
        help="Media store: a folder or file:// URL (default: LABELMILL_MEDIA_URL, else media/ "
        "in the data directory). Other URL schemes (s3://) are not supported yet.",
    ),
]
T = TypeVar("T")


class UserRole(StrEnum):
    admin = "admin"
    creator = "creator"
    member = "member"


class MemberRole(StrEnum):
    manager = "manager"
    reviewer = "reviewer"
    annotator = "annotator"


class OnDuplicate(StrEnum):
    reject = "reject"
    update = "update"
    skip = "skip"


def fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


@contextmanager
def friendly_errors() -> Iterator[None]:
    """Turn every expected failure into one clear line instead of a traceback."""
    from sqlalchemy.exc import OperationalError

    from labelmill.formats.records import FormatError
    from labelmill.services.errors import LabelmillError

    try:
        yield
    except BrokenPipeError:
        quiet_broken_pipe()
    except (LabelmillError, FormatError) as exc:
        fail(str(exc))
    except OperationalError as exc:
        fail(f"database: {str(exc.orig).strip().splitlines()[0]}")
    except (OSError, ValueError) as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        fail("interrupted; nothing was stored by the unfinished command", 130)


def quiet_broken_pipe() -> NoReturn:
    """Whoever read our output stopped (``labelmill export --out - | head``): end quietly, as shell
    tools do, with 128 + SIGPIPE; stdout goes to devnull so the exit's flush cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # not a real file (a test runner's capture)
        pass
    raise typer.Exit(141)


def database(url: str | None) -> Any:
    from labelmill.store.engine import open_database

    return open_database(url)


def media_store(url: str | None) -> Any:
    """The media store at ``url`` (default: the settings'); a bad URL is a one-line ``ValueError``."""
    from labelmill.config import get_settings
    from labelmill.store.media import open_media_store

    return open_media_store(url or get_settings().resolved_media_url())


def run(fn: Callable[[], T]) -> T:
    with friendly_errors():
        return fn()


def version_callback(value: bool) -> None:
    if value:
        typer.echo(f"labelmill {__version__}")
        raise typer.Exit()


@app.callback()
def main_callback(
    version: Annotated[
        bool, typer.Option("--version", callback=version_callback, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    pass


# -- users and tokens ------------------------------------------------------------------------------


@user_app.command("create")
def user_create(
    name: Annotated[str, typer.Argument(help="Login name.")],
    role: Annotated[
        UserRole,
        typer.Option(help="Global role: admin (everything), creator (may create projects), member."),
    ] = UserRole.member,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from stdin.")
    ] = False,
    db: DbOption = None,
) -> None:
    """Create a user. Without --password-stdin the user logs in with API tokens only."""

    def go() -> None:
        from labelmill.services.users import create_user

        password = sys.stdin.readline().rstrip("\r\n") if password_stdin else None
        with database(db).session() as session:
            user = create_user(session, name, role=role.value, password=password)
            typer.echo(f"created user {user.name!r} (id {user.id}, {user.role})")

    run(go)


@user_app.command("role")
def user_role(
    name: Annotated[str, typer.Argument(help="User name or id.")],
    role: Annotated[UserRole, typer.Argument(help="admin, creator (may create projects) or member.")],
    db: DbOption = None,
) -> None:
    """Change a user's global role: only admins and creators create projects."""

    def go() -> None:
        from labelmill.services.users import get_user, set_role

        with database(db).session() as session:
            user = set_role(session, get_user(session, name), role.value)
            typer.echo(f"{user.name} is now {user.role}")

    run(go)


@token_app.command("create")
def token_create(
    name: Annotated[str, typer.Argument(help="User name or id the token is for.")],
    label: Annotated[str, typer.Option(help="A note to recognise the token by.")] = "cli",
    db: DbOption = None,
) -> None:
    """Print a new API token for a user (shown once: store it)."""

    def go() -> None:
        from labelmill.services.users import create_token, get_user

        with database(db).session() as session:
            secret, _ = create_token(session, get_user(session, name), name=label)
        typer.echo(secret)

    run(go)


# -- projects and members --------------------------------------------------------------------------


def _read_structured(path: Path, what: str) -> Any:
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        fail(f"{path}: cannot read {what}: {exc.strerror}")
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            return yaml.safe_load(text)
        return json.loads(text)
    except json.JSONDecodeError as exc:
        fail(f"{path}:{exc.lineno}: {what} is not valid JSON: {exc.msg}")
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        fail(f"{path}{line}: {what} is not valid YAML: {getattr(exc, 'problem', exc)}")


@project_app.command("create")
def project_create(
    name: Annotated[str, typer.Argument(help="Project name (unique).")],
    schema: Annotated[
        Path, typer.Option("--schema", help="Label schema file, JSON or YAML: {controls: [...]}.")
    ],
    overlap: Annotated[int | None, typer.Option(help="Labels each item gets (overrides --settings).")] = None,
    settings: Annotated[
        Path | None, typer.Option("--settings", help="Project settings file (JSON or YAML).")
    ] = None,
    description: Annotated[str, typer.Option(help="Short description.")] = "",
    instructions: Annotated[Path | None, typer.Option(help="Annotator instructions (Markdown file).")] = None,
    db: DbOption = None,
) -> None:
    """Create a project and print its id."""

    def go() -> None:
        from labelmill.services.projects import create_project

        schema_obj = _read_structured(schema, "schema")
        settings_obj = _read_structured(settings, "settings") if settings else {}
        if not isinstance(settings_obj, dict):
            fail(f"{settings}: settings must be an object")
        if overlap is not None:
            settings_obj["overlap"] = overlap
            settings_obj.setdefault("max_overlap", max(overlap, settings_obj.get("max_overlap") or overlap))
        text = instructions.read_text(encoding="utf-8") if instructions else ""
        with database(db).session() as session:
            project = create_project(
                session, name, schema_obj, settings=settings_obj, description=description, instructions=text
            )
            typer.echo(project.id)

    run(go)


@project_app.command("list")
def project_list(db: DbOption = None) -> None:
    """List projects with their item counts."""

    def go() -> None:
        from sqlalchemy import func, select

        from labelmill.store.models import Item, Project

        with database(db).session() as session:
            counts = dict(
                session.execute(select(Item.project_id, func.count()).group_by(Item.project_id)).all()
            )
            for p in session.scalars(select(Project).order_by(Project.id)):
                typer.echo(f"{p.id}\t{p.name}\t{counts.get(p.id, 0)} items")

    run(go)


@member_app.command("add")
def member_add(
    project: Annotated[str, typer.Argument(help="Project id or name.")],
    user: Annotated[str, typer.Argument(help="User name or id.")],
    role: Annotated[MemberRole, typer.Option(help="Role in the project.")],
    db: DbOption = None,
) -> None:
    """Add a user to a project (or change their role)."""

    def go() -> None:
        from labelmill.services.projects import add_member, get_project
        from labelmill.services.users import get_user

        with database(db).session() as session:
            p, u = get_project(session, project), get_user(session, user)
            add_member(session, p, u, role.value)
            typer.echo(f"{u.name} is now {role.value} of {p.name!r}")

    run(go)


@member_app.command("pause")
def member_pause(
    project: Annotated[str, typer.Argument(help="Project id or name.")],
    user: Annotated[str, typer.Argument(help="User name or id.")],
    reason: Annotated[str | None, typer.Option(help="Why (the annotator sees it).")] = None,
    db: DbOption = None,
) -> None:
    """Pause an annotator. A manager's decision sticks: automatic pausing never changes it."""
    _set_paused(project, user, True, reason, db)


@member_app.command("resume")
def member_resume(
    project: Annotated[str, typer.Argument(help="Project id or name.")],
    user: Annotated[str, typer.Argument(help="User name or id.")],
    db: DbOption = None,
) -> None:
    """Resume a paused annotator. The decision sticks: spammer detection and falling gold accuracy
    no longer pause them until a manager pauses them again."""
    _set_paused(project, user, False, None, db)


def _set_paused(project: str, user: str, paused: bool, reason: str | None, db: str | None) -> None:
    def go() -> None:
        from labelmill.services.pausing import manager_decides
        from labelmill.services.projects import get_member, get_project
        from labelmill.services.users import get_user

        with database(db).session() as session:
            p, u = get_project(session, project), get_user(session, user)
            manager_decides(get_member(session, p, u.id), paused, reason)
            typer.echo(f"{u.name} is {'paused' if paused else 'resumed'} in {p.name!r}")

    run(go)


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def _eta_text(progress: dict[str, Any]) -> str:
    if progress["labels_remaining"] <= 0:
        return "finished"
    if progress["eta_seconds"] is None:
        return "finish time unknown until 20 labels over 10 minutes"
    low, high = _duration(progress["eta_low"]), _duration(progress["eta_high"])
    return f"finishes in {_duration(progress['eta_seconds'])}, 90% within {low} to {high}"


@app.command("stats")
def stats_cmd(
    project: Annotated[str, typer.Argument(help="Project id or name.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the full statistics as JSON.")] = False,
    db: DbOption = None,
) -> None:
    """Project progress and per-annotator statistics (speed, gold accuracy, agreement, skill, reviews).

    Gold items are counted apart from the items to label; the time to finish needs 20 labels over
    10 minutes and comes with its 90% interval."""

    def go() -> None:
        from rich.console import Console
        from rich.table import Table

        from labelmill.services.projects import get_project
        from labelmill.services.stats import project_stats

        with database(db).session() as session:
            data = project_stats(session, get_project(session, project))
        if as_json:
            typer.echo(json.dumps(data, indent=2, default=str))
            return
        p = data["progress"]
        gold = f" (and {p['gold_items']} gold, not counted)" if p["gold_items"] else ""
        typer.echo(
            f"items {p['items']}{gold}: {p['done']} done, {p['in_progress']} in progress, "
            f"{p['remaining']} remaining ({p['labels_remaining']} labels, "
            f"{p['labels_per_hour']}/h, {_eta_text(p)})"
        )
        table = Table(
            "annotator", "done", "skips", "median s", "gold acc", "agreement", "skill", "accepted", "status"
        )

        def pct(v: float | None) -> str:
            return "-" if v is None else f"{v:.0%}"

        for a in data["annotators"]:
            skill = sum(a["skill"].values()) / len(a["skill"]) if a["skill"] else None
            median = "-" if a["median_seconds"] is None else f"{a['median_seconds']:.1f}"
            status = f"paused: {a['pause_reason']}" if a["paused"] else (a["qualification"] or "")
            table.add_row(
                a["name"],
                str(a["tasks_done"]),
                str(a["skips"]),
                median,
                pct(a["gold_accuracy"]),
                pct(a["agreement_with_consensus"]),
                pct(skill),
                pct(a["review_acceptance"]),
                status,
            )
        Console().print(table)

    run(go)


# -- import and export -----------------------------------------------------------------------------


def _progress() -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.speed}/s"),
        TimeElapsedColumn(),
        transient=True,
        disable=not sys.stderr.isatty(),
        console=__import__("rich.console").console.Console(stderr=True),
    )


def _count_lines(path: Path) -> int | None:
    if path.is_dir() or path.suffix.lower() not in (".jsonl", ".ndjson", ".csv"):
        return None
    count = 0
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            count += chunk.count(b"\n")
    return count


class Target(StrEnum):
    gold = "gold"
    predictions = "predictions"
    annotations = "annotations"


@app.command("import")
def import_(
    project: Annotated[str, typer.Argument(help="Project id or name.")],
    files: Annotated[
        list[Path],
        typer.Argument(
            help="JSONL, CSV, TSV, Parquet, Label Studio JSON, CoNLL files, media folders, Hugging Face "
            "dataset folders, or labelled datasets (--format coco|yolo|voc)."
        ),
    ],
    format: Annotated[
        str | None,
        typer.Option(
            "--format",
            help="jsonl, csv, tsv, parquet, labelstudio, folder, hf_dataset (a datasets save_to_disk "
            "folder) (default: by extension or folder), or a labelled dataset: coco, yolo, voc, conll.",
        ),
    ] = None,
    as_: Annotated[
        Target,
        typer.Option(
            "--as",
            help="Labels of a coco/yolo/voc/conll dataset become annotations (default: consensus and "
            "exports give the dataset back), predictions (pre-labels for people to check) or gold.",
        ),
    ] = Target.annotations,
    control: Annotated[
        str | None, typer.Option(help="Control the dataset's labels go under (default: the first that fits).")
    ] = None,
    on_duplicate: Annotated[
        OnDuplicate,
        typer.Option(help="What an existing external_id does: reject the import, update it, or skip it."),
    ] = OnDuplicate.reject,
    gold_column: Annotated[
        list[str] | None,
        typer.Option(
            "--gold-column",
            metavar="CONTROL=COLUMN",
            help="A table column holding CONTROL's gold answer (repeatable; CONTROL alone when the "
            "column has its name). Convention without options: a column gold.CONTROL.",
        ),
    ] = None,
    annotation_column: Annotated[
        list[str] | None,
        typer.Option(
            "--annotation-column",
            metavar="ANNOTATOR.CONTROL=COLUMN",
            help="A column holding ANNOTATOR's answer of CONTROL (repeatable). Convention: a column "
            "annotation.ANNOTATOR.CONTROL.",
        ),
    ] = None,
    meta_column: Annotated[
        list[str] | None,
        typer.Option(
            "--meta-column",
            metavar="KEY=COLUMN",
            help="A column that goes to the item's meta (not shown to annotators) as KEY (repeatable; "
            "COLUMN alone keeps its name). Convention: a column meta.KEY.",
        ),
    ] = None,
    drop_column: Annotated[
        list[str] | None,
        typer.Option("--drop-column", metavar="COLUMN", help="A column to leave out (repeatable)."),
    ] = None,
    id_column: Annotated[
        str | None,
        typer.Option(
            "--id-column",
            metavar="COLUMN",
            help="The column of external ids (default: external_id, else id).",
        ),
    ] = None,
    db: DbOption = None,
    media_url: MediaOption = None,
) -> None:
    """Import items, all or nothing: a bad line is reported as file:line: field: reason, nothing stored.

    Every column of a CSV, TSV or Parquet file or a dataset folder (every key of a flat JSONL line)
    is item data, which annotators see, except: external_id (else id), meta.KEY, gold.CONTROL and
    annotation.ANNOTATOR.CONTROL, and the columns the --*-column options name. A data column named
    like a control or an answer (label, class, target, ...) is warned about.
    """

    def go() -> None:
        from labelmill.formats.columns import parse_column_options
        from labelmill.services.ingest import import_records, iter_all, open_reader
        from labelmill.services.projects import get_project, load_schema

        media = media_store(media_url)
        for f in files:
            if not f.exists():
                fail(f"{f}: no such file or folder")
        database_ = database(db)
        with database_.session() as session:
            p = get_project(session, project)
            project_id, schema = p.id, load_schema(p.label_schema)
        columns = parse_column_options(
            gold=gold_column,
            annotations=annotation_column,
            meta=meta_column,
            drop=drop_column,
            id_column=id_column,
        ).with_schema({c.name: c.type for c in schema.controls})
        totals = [_count_lines(f) for f in files]
        total = sum(t for t in totals if t) if all(t is not None for t in totals) else None
        with _progress() as bar:
            task = bar.add_task("importing", total=total)
            records = iter_all(
                open_reader(schema, f, format, target=as_.value, control=control, columns=columns)
                for f in files
            )
            result = import_records(
                database_,
                project_id,
                records,
                on_duplicate=on_duplicate.value,
                media=media,
                progress=lambda n: bar.advance(task, n),
            )
        counts = {k: v for k, v in result.as_dict().items() if k != "warnings"}
        summary = ", ".join(f"{v} {k}" for k, v in counts.items() if v)
        typer.echo(f"imported into project {project_id}: {summary or 'nothing'}")
        for warning in result.warnings:
            typer.echo(f"warning: {warning}", err=True)
        if result.needs_consensus:
            from labelmill.jobs.executor import run_pending

            run_pending(database_, project_id=project_id, kinds=("consensus",))
            typer.echo("consensus refreshed")

    run(go)


def _format_help() -> str:
    from labelmill.services.export import export_formats

    return "Export format: " + "; ".join(f"{name} ({text})" for name, text in export_formats().items()) + "."


class LabelMode(StrEnum):
    consensus = "consensus"
    annotations = "annotations"


@app.command("export")
def export(
    project: Annotated[str, typer.Argument(help="Project id or name.")],
    out: Annotated[
        Path,
        typer.Option(
            "--out", help="Output file, or folder for yolo/voc/huggingface ('-': stdout, jsonl only)."
        ),
    ],
    format: Annotated[str, typer.Option("--format", help=_format_help())] = "jsonl",
    labels: Annotated[
        LabelMode,
        typer.Option(help="consensus: one label per item (training data); annotations: every label."),
    ] = LabelMode.consensus,
    predictions: Annotated[
        bool, typer.Option("--predictions/--no-predictions", help="Also export predictions.")
    ] = False,
    auto: Annotated[
        bool, typer.Option("--auto/--no-auto", help="Include model auto-labels (marked).")
    ] = True,
    gold: Annotated[
        bool | None, typer.Option("--gold/--no-gold", help="Only gold items / only non-gold items.")
    ] = None,
    labelled_only: Annotated[
        bool, typer.Option("--labelled-only", help="Only items that have a consensus.")
    ] = False,
    slice_: Annotated[
        list[str] | None, typer.Option("--slice", help="Only items whose meta has key=value (repeatable).")
    ] = None,
    db: DbOption = None,
    media_url: MediaOption = None,
) -> None:
    """Export a project in a format training code reads (jsonl imports back unchanged). A
    consensus refresh still pending runs first, so no stored label is missed."""

    def go() -> None:
        from labelmill.formats.exporting import EXPORTERS, ExportOptions
        from labelmill.formats.jsonl_export import write_jsonl
        from labelmill.jobs.executor import InlineExecutor
        from labelmill.jobs.freshness import ensure_consensus_fresh
        from labelmill.services.export import export_project, iter_export_rows
        from labelmill.services.items import ItemFilter
        from labelmill.services.projects import get_project, project_item_count

        if format not in EXPORTERS:
            fail(f"unknown export format {format!r} (known: {', '.join(EXPORTERS)})")
        filt = ItemFilter.parse_slices(slice_, is_gold=gold, has_consensus=True if labelled_only else None)
        options = ExportOptions(labels=labels.value, include_predictions=predictions, include_auto=auto)
        database_ = database(db)
        with database_.session() as session:
            p = get_project(session, project)
            total = project_item_count(session, p.id)
        # Every label stored before this export is in it: a refresh still queued (a server
        # stopped before its worker ran it) runs here first; if it fails, nothing is written.
        ensure_consensus_fresh(database_, p.id, InlineExecutor(database_))
        if str(out) == "-":
            if format != "jsonl":
                fail("only jsonl can be written to stdout")
            n = write_jsonl(iter_export_rows(database_, p.id, filt), sys.stdout)
        else:
            media = media_store(media_url)
            tmp = out.with_name(out.name + ".partial")
            with _progress() as bar:
                task = bar.add_task("exporting", total=total)
                n = export_project(
                    database_,
                    p.id,
                    format,
                    tmp,
                    options=options,
                    filt=filt,
                    media=media,
                    progress=lambda done: bar.update(task, completed=done),
                )
            if out.is_dir():
                shutil.rmtree(out)
            os.replace(tmp, out)  # a reader never sees half an export
        typer.echo(f"exported {n} items to {out}", err=True)

    run(go)


# -- quality ---------------------------------------------------------------------------------------


LabelsArgument = Annotated[
    Path | None,
    typer.Argument(
        help="Labels: a CSV with columns item,worker,label (task accepted for item), or a project's "
        "annotations export (JSONL, or CSV with --labels annotations). Or give --project.",
    ),
]
ProjectLabelsOption = Annotated[
    str | None, typer.Option("--project", help="Read the labels from this project (id or name) instead.")
]
ControlOption = Annotated[
    str | None,
    typer.Option("--control", help="The control whose answers to use (default: the only one there is)."),
]


def _read_labels(path: Path | None, project: str | None, control: str | None, db: str | None) -> Any:
    from labelmill.formats.labels import labels_from_rows, read_label_table

    if path is not None and project is None:
        if not path.exists():
            fail(f"{path}: no such file")
        return read_label_table(path, control)
    if project is None or path is not None:
        fail("give a labels file or --project, one of them")
    from labelmill.services.export import iter_export_rows
    from labelmill.services.projects import get_project

    database_ = database(db)
    with database_.session() as session:
        p = get_project(session, project)
        pid, name = p.id, p.name
    table = labels_from_rows(iter_export_rows(database_, pid), control, f"project {name!r}")
    if not table.labels:
        fail(f"project {name!r} has no annotations" + (f" of {control!r}" if control else ""))
    return table


def _method_help() -> str:
    from labelmill.quality.methods import METHODS

    return (
        "Aggregation method: " + ", ".join(METHODS) + " (default: ds, the most accurate on our benchmarks)."
    )


@app.command("aggregate")
def aggregate(
    labels: LabelsArgument = None,
    method: Annotated[str | None, typer.Option("--method", help=_method_help())] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Write item,label,confidence here (default stdout).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed for stochastic methods.")] = 0,
    project: ProjectLabelsOption = None,
    control: ControlOption = None,
    db: DbOption = None,
) -> None:
    """Aggregate crowd labels into one label per item with its confidence."""

    def go() -> None:
        from labelmill.quality.methods import DEFAULT_METHOD, make_aggregator

        table = _read_labels(labels, project, control, db)
        model = make_aggregator(method or DEFAULT_METHOD, random_state=seed)
        model.fit(table.as_columns())
        probas = model.predict_proba()
        best = probas.argmax(axis=1)
        fh = out.open("w", newline="", encoding="utf-8") if out else sys.stdout
        try:
            writer = csv.writer(fh)
            writer.writerow(["item", "label", "confidence"])
            for item, k, row in zip(model.items_, best, probas, strict=True):
                writer.writerow([item, model.classes_[k], f"{row[k]:.6f}"])
        finally:
            if out:
                fh.close()
        if out:
            typer.echo(f"wrote {len(model.items_)} items to {out}", err=True)

    run(go)


@app.command("agreement")
def agreement(
    labels: LabelsArgument = None,
    metric: Annotated[
        str, typer.Option("--metric", help="krippendorff, fleiss, cohen (mean pairwise) or percent.")
    ] = "krippendorff",
    project: ProjectLabelsOption = None,
    control: ControlOption = None,
    db: DbOption = None,
) -> None:
    """Inter-annotator agreement of a label file or of a project's annotations."""

    def go() -> None:
        from labelmill.quality.agreement import AGREEMENT_METRICS

        if metric not in AGREEMENT_METRICS:
            fail(f"unknown metric {metric!r} (known: {', '.join(AGREEMENT_METRICS)})")
        value = AGREEMENT_METRICS[metric](_read_labels(labels, project, control, db).as_columns())
        typer.echo(f"{metric}\t{value:.6f}")

    run(go)


# -- server ----------------------------------------------------------------------------------------


@app.command("migrate")
def migrate_cmd(db: DbOption = None) -> None:
    """Bring the database schema to the newest version (every command also does this)."""
    run(lambda: database(db).dispose())
    typer.echo("database is up to date")


@app.command("worker")
def worker_cmd(
    db: DbOption = None,
    once: Annotated[
        bool, typer.Option("--once", help="Run the queued jobs until none is left, then exit.")
    ] = False,
    threads: Annotated[int, typer.Option(min=1, max=64, help="Jobs run at once (threads).")] = 1,
) -> None:
    """Run queued jobs (consensus refresh, imports, exports) in this process; `serve` also runs
    them itself unless --no-worker. Jobs whose worker died are queued again (or failed after
    3 tries, imports 2)."""
    from labelmill.jobs.executor import LocalExecutor, reap, run_pending

    def go() -> None:
        database_ = database(db)
        if once:
            reap(database_)
            typer.echo(f"ran {run_pending(database_)} jobs")
            return
        executor = LocalExecutor(database_, threads=threads, poll=True).start()
        typer.echo("worker running; Ctrl-C stops it", err=True)
        try:
            executor.wait()
        except KeyboardInterrupt:
            typer.echo("stopping: finishing the jobs that run now", err=True)
        finally:
            executor.close()

    run(go)


@app.command("serve")
def serve(
    db: DbOption = None,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    workers: Annotated[int, typer.Option(help="Server processes (use PostgreSQL for more than one).")] = 1,
    worker: Annotated[
        bool,
        typer.Option(
            "--worker/--no-worker",
            help="Run every queued job (consensus refresh, ...) in the server; --no-worker runs "
            "only the jobs its requests ask for (imports, exports, and the consensus refresh an "
            "export needs first); `labelmill worker` runs the rest.",
        ),
    ] = True,
    media_url: MediaOption = None,
) -> None:
    """Serve the REST API (and /docs), with a background job worker in each process."""
    import uvicorn

    from labelmill.config import get_settings

    url = db or get_settings().resolved_database_url()
    with friendly_errors():
        store = media_store(media_url)  # a bad --media fails here, in one line, not in each worker
        database(url).dispose()  # migrate once, before the workers start
    os.environ["LABELMILL_DATABASE_URL"] = url
    os.environ["LABELMILL_MEDIA_URL"] = store.url
    os.environ["LABELMILL_SERVE_WORKER"] = "1" if worker else "0"
    uvicorn.run(
        "labelmill.api.server:build",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="info",
        access_log=False,
    )


@app.command("demo")
def demo(
    db: DbOption = None,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    serve_: Annotated[
        bool, typer.Option("--serve/--no-serve", help="Start the server after loading the demo.")
    ] = True,
    media_url: MediaOption = None,
) -> None:
    """Load one demo project per data type, print the login, and start the server (unless --no-serve)."""

    def go() -> tuple[str, str]:
        from labelmill.demo import load_demo

        password = secrets.token_urlsafe(9)
        store = media_store(media_url)
        database_ = database(db)
        created = load_demo(database_, store, password=password)
        for name, count in created:
            typer.echo(f"  {name}: {count} items")
        return "demo", password

    name, password = run(go)
    if serve_:
        typer.echo(f"\nlabelmill {__version__} demo at http://{host}:{port}/  (API docs: /docs)")
    else:
        typer.echo(f"\nlabelmill {__version__} demo loaded; not serving (--no-serve).")
        typer.echo("start the server with `labelmill serve` (same --db and --media), then log in")
    typer.echo(f"login: {name}  password: {password}")
    if serve_:
        serve(db=db, host=host, port=port, workers=1, worker=True, media_url=media_url)


def main() -> None:
    try:
        app()
    except BrokenPipeError:
        try:
            quiet_broken_pipe()
        except typer.Exit as exit_:
            sys.exit(exit_.exit_code)


if __name__ == "__main__":
    main()

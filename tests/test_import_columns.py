"""Table imports keep answers out of what annotators see: the column convention, the options that
map columns to gold, annotations, meta and ids, and the warnings when an answer stays data."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from labelmill.cli import app
from labelmill.formats import FormatError, read_csv, read_jsonl, read_parquet
from labelmill.formats.columns import ColumnMap, parse_column_options
from tests.conftest import auth, make_user

SMS_SCHEMA = {
    "controls": [{"name": "label", "type": "choices", "source": "text", "classes": ["ham", "spam"]}]
}
TYPES = {"label": "choices", "stars": "rating", "tags": "multi_choices"}


def sms_csv(rows: int = 10, *, spam_every: int = 3) -> str:
    """A small table shaped like the shared sms_spam set: id,text,label."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["id", "text", "label"])
    for i in range(rows):
        writer.writerow([f"sms{i:05d}", f"message, number {i}", "spam" if i % spam_every == 0 else "ham"])
    return out.getvalue()


def records(text: str, columns: ColumnMap | None = None) -> list[Any]:
    return list(read_csv(io.BytesIO(text.encode()), "data.csv", columns=columns))


# -- the convention and the options, without a database ------------------------------------------


def test_convention_names_the_roles() -> None:
    text = (
        "external_id,text,meta.source,gold.label,annotation.ann.label,annotation.a.b.label\n"
        "e1,hello,web,spam,ham,spam\n"
        "e2,bye,,,,\n"
    )
    first, second = records(text, ColumnMap(control_types=TYPES))
    assert (first.external_id, first.data, first.meta) == ("e1", {"text": "hello"}, {"source": "web"})
    assert first.gold == {"label": "spam"}
    assert first.annotations == [
        {"annotator": "ann", "value": {"label": "ham"}},
        {"annotator": "a.b", "value": {"label": "spam"}},  # the control is after the last dot
    ]
    # Empty cells carry no label: one file mixes gold and ordinary items.
    assert second.gold is None and second.annotations == [] and second.meta == {"source": ""}


def test_options_take_the_answer_out_of_data() -> None:
    columns = parse_column_options(gold=["label"]).with_schema(TYPES)
    recs = records(sms_csv(4), columns)
    assert [r.external_id for r in recs] == ["sms00000", "sms00001", "sms00002", "sms00003"]
    assert all(set(r.data) == {"text"} for r in recs)
    assert [r.gold for r in recs] == [
        {"label": "spam"},
        {"label": "ham"},
        {"label": "ham"},
        {"label": "spam"},
    ]

    columns = parse_column_options(
        annotations=["crowd.label=label"], meta=["origin=text"], drop=["id"], id_column=None
    )
    (rec, *_) = records(sms_csv(2), columns)
    assert rec.data == {} and rec.meta == {"origin": "message, number 0"} and rec.external_id is None
    assert rec.annotations == [{"annotator": "crowd", "value": {"label": "spam"}}]

    (rec, *_) = records(sms_csv(2), parse_column_options(id_column="text", meta={"lbl": "label"}))
    assert rec.external_id == "message, number 0" and rec.data == {"id": "sms00000"}
    assert rec.meta == {"lbl": "spam"}


def test_cells_become_the_values_their_controls_want() -> None:
    text = 'gold.stars,gold.tags,t\n4,"[""a"", ""b""]",x\n'
    (rec,) = records(text, ColumnMap(control_types=TYPES))
    assert rec.gold == {"stars": 4, "tags": ["a", "b"]}
    bad = "gold.tags,t\n[oops,x\n"
    with pytest.raises(FormatError, match=r"^data.csv:2: gold.tags: a multi_choices answer must be JSON"):
        records(bad, ColumnMap(control_types=TYPES))


@pytest.mark.parametrize(
    ("text", "columns", "message"),
    [
        ("text,label\nx,spam\n", parse_column_options(gold=["label=labl"]), "data.csv:1: no column 'labl'"),
        (
            "text,gold.lable\nx,spam\n",
            ColumnMap(control_types=TYPES),
            "data.csv:1: gold.lable: no control 'lable'",
        ),
        ("text,annotation.x\nx,spam\n", ColumnMap(), None),  # one dot: not the convention, plain data
        ("external_id,text\n1.5,x\n", ColumnMap(), None),  # CSV ids are text: any string is an id
    ],
)
def test_column_errors_name_file_line_and_column(text: str, columns: ColumnMap, message: str | None) -> None:
    if message is None:
        assert records(text, columns)
        return
    with pytest.raises(FormatError) as err:
        records(text, columns)
    assert str(err.value).startswith(message)


def test_options_are_checked_against_the_schema() -> None:
    with pytest.raises(ValueError, match="no control 'spam' in the project's schema"):
        parse_column_options(gold=["spam=label"]).with_schema(TYPES)
    with pytest.raises(ValueError, match="column 'label' is named twice"):
        parse_column_options(gold=["label"], meta=["label"])
    with pytest.raises(ValueError, match=r"ANNOTATOR\.CONTROL=COLUMN"):
        parse_column_options(annotations=["label=label"])


def test_flat_jsonl_lines_follow_the_convention() -> None:
    lines = [
        {"text": "a", "id": 7, "gold.label": "spam"},
        {"text": "b", "external_id": "x", "meta.k": 1},
        {"data": {"text": "c", "gold.label": "kept"}, "external_id": "y"},  # structured: as it says
    ]
    text = "".join(json.dumps(line) + "\n" for line in lines)
    a, b, c = read_jsonl(io.BytesIO(text.encode()), "x.jsonl", columns=ColumnMap(control_types=TYPES))
    assert (a.external_id, a.data, a.gold) == ("7", {"text": "a"}, {"label": "spam"})
    assert (b.external_id, b.data, b.meta) == ("x", {"text": "b"}, {"k": 1})
    assert c.data == {"text": "c", "gold.label": "kept"} and c.gold is None
    with pytest.raises(FormatError, match=r"^x.jsonl:1: no flat line has the key 'label'"):
        list(read_jsonl(io.BytesIO(text.encode()), "x.jsonl", columns=parse_column_options(gold=["label"])))
    with pytest.raises(FormatError, match=r"^x.jsonl:1: id: must be a string or an integer, not a boolean"):
        list(read_jsonl(io.BytesIO(b'{"id": true, "text": "t"}\n'), "x.jsonl"))


def test_parquet_columns(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "x.parquet"
    pq.write_table(pa.table({"id": [1, 2], "text": ["a", "b"], "label": ["spam", None]}), path)
    recs = list(read_parquet(path, columns=parse_column_options(gold=["label"]).with_schema(TYPES)))
    assert [(r.external_id, r.data, r.gold) for r in recs] == [
        ("1", {"text": "a"}, {"label": "spam"}),
        ("2", {"text": "b"}, None),
    ]


_NAME = st.sampled_from(
    ["text", "id", "external_id", "label", "meta.a", "meta.b", "gold.label", "annotation.w.label", "x.y"]
)


@given(
    names=st.lists(_NAME, min_size=1, max_size=6, unique=True),
    values=st.lists(st.text(alphabet="ab ,\"'", max_size=5), min_size=6, max_size=6),
    gold_from=st.sampled_from([None, "label", "text"]),
)
def test_every_cell_lands_in_exactly_one_place(
    names: list[str], values: list[str], gold_from: str | None
) -> None:
    """Whatever the header, each column's cell is found once: in data, meta, gold, annotations or
    the id (never lost, never twice)."""
    if gold_from is not None and (gold_from not in names or "gold.label" in names):
        gold_from = None
    columns = parse_column_options(gold={"label": gold_from} if gold_from else None)
    row = values[: len(names)]
    plan = columns.with_schema({"label": "text"}).plan(names, "t.csv", 1)
    rec = plan.record(row, "t.csv", 2)
    found: list[tuple[str, Any]] = [(k, v) for k, v in rec.data.items()]
    found += [(f"meta.{k}", v) for k, v in (rec.meta or {}).items()]
    gold_column = gold_from or "gold.label"
    found += [(gold_column, v) for v in (rec.gold or {}).values()]
    found += [(f"annotation.{a['annotator']}.label", a["value"]["label"]) for a in rec.annotations]
    id_column = "external_id" if "external_id" in names else "id" if "id" in names else None
    if rec.external_id is not None:
        found.append((id_column or "", rec.external_id))
    labels = {gold_column, "annotation.w.label"}
    expected = {
        (name, value)
        for name, value in zip(names, row, strict=True)
        # a blank cell carries no label, and an empty id is no id
        if not (name in labels and not value.strip()) and not (name == id_column and value == "")
    }
    assert len(found) == len(set(found)) and set(found) == expected


# -- through the CLI --------------------------------------------------------------------------------


def cli(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.setenv("LABELMILL_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("LABELMILL_DATABASE_URL", raising=False)
    schema = tmp_path / "sms.json"
    schema.write_text(json.dumps(SMS_SCHEMA))
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    assert cli("project", "create", "sms", "--schema", str(schema), "--db", db).exit_code == 0
    return {"tmp": tmp_path, "db": db}


def export_rows(env: dict[str, Any]) -> list[dict[str, Any]]:
    out = env["tmp"] / "out.jsonl"
    assert cli("export", "sms", "--out", str(out), "--db", env["db"]).exit_code == 0
    return [json.loads(line) for line in out.read_text().splitlines()]


def test_label_column_kept_as_data_is_warned(env: dict[str, Any]) -> None:
    path = env["tmp"] / "data.csv"
    path.write_text(sms_csv())
    r = cli("import", "sms", str(path), "--db", env["db"])
    assert r.exit_code == 0 and "10 created" in r.stdout, r.output
    assert "warning: data field 'label' has the name of the control 'label'" in r.stderr
    assert "--gold-column label=label" in r.stderr


def test_gold_column_makes_gold_not_data(env: dict[str, Any]) -> None:
    path = env["tmp"] / "data.csv"
    path.write_text(sms_csv())
    r = cli("import", "sms", str(path), "--gold-column", "label", "--db", env["db"])
    assert r.exit_code == 0, r.output
    assert "every imported item (10) is gold" in r.stderr and "data field" not in r.stderr
    r = cli("stats", "sms", "--db", env["db"])
    assert r.stdout.startswith("items 0 (and 10 gold, not counted)")


def test_annotation_column_labels_the_items(env: dict[str, Any]) -> None:
    path = env["tmp"] / "data.csv"
    path.write_text(sms_csv())
    r = cli("import", "sms", str(path), "--annotation-column", "source.label=label", "--db", env["db"])
    assert r.exit_code == 0 and "10 annotations" in r.stdout and r.stderr == "", r.output
    rows = export_rows(env)
    assert rows[0]["data"] == {"text": "message, number 0"} and rows[0]["external_id"] == "sms00000"
    assert rows[0]["consensus"]["value"] == {"label": "spam"}


def test_some_gold_rows_by_convention(env: dict[str, Any]) -> None:
    path = env["tmp"] / "data.csv"
    path.write_text("id,text,gold.label,meta.batch\na,one,spam,1\nb,two,,1\nc,three,,2\n")
    r = cli("import", "sms", str(path), "--db", env["db"])
    assert r.exit_code == 0 and r.stderr == "", r.output
    rows = {row["external_id"]: row for row in export_rows(env)}
    assert rows["a"]["data"] == {"text": "one"} and rows["b"]["data"] == {"text": "two"}
    gold = env["tmp"] / "gold.jsonl"
    assert cli("export", "sms", "--gold", "--out", str(gold), "--db", env["db"]).exit_code == 0
    assert [json.loads(x)["external_id"] for x in gold.read_text().splitlines()] == ["a"]


def test_bad_gold_value_names_file_line_and_field(env: dict[str, Any]) -> None:
    path = env["tmp"] / "data.csv"
    path.write_text('id,text,label\na,one,spam\nb,"two\nlines",ham\nc,three,spamm\n')
    r = cli("import", "sms", str(path), "--gold-column", "label", "--db", env["db"])
    assert r.exit_code == 1 and r.stderr.startswith("error: data.csv:5: gold.label"), r.output
    assert "spamm" in r.stderr
    assert "0 items" in cli("project", "list", "--db", env["db"]).stdout
    r = cli("import", "sms", str(path), "--gold-column", "sentiment=label", "--db", env["db"])
    assert r.exit_code == 1 and "no control 'sentiment'" in r.stderr


def test_column_options_refused_for_other_formats(env: dict[str, Any]) -> None:
    path = env["tmp"] / "tasks.json"
    path.write_text(json.dumps([{"data": {"text": "x"}}]))
    r = cli("import", "sms", str(path), "--gold-column", "label", "--db", env["db"])
    assert r.exit_code == 1 and "column options apply to JSONL, CSV, TSV, Parquet" in r.stderr


def test_shared_sms_spam(env: dict[str, Any], shared_datasets: Path) -> None:
    path = shared_datasets / "text" / "sms_spam" / "data.csv"
    r = cli("import", "sms", str(path), "--gold-column", "label", "--db", env["db"])
    assert r.exit_code == 0 and "5574 created" in r.stdout, r.output
    rows = export_rows(env)
    assert len(rows) == 5574 and all(set(row["data"]) == {"text"} for row in rows)
    r = cli("stats", "sms", "--db", env["db"])
    assert r.stdout.startswith("items 0 (and 5574 gold, not counted)")


# -- through the API: tasks/next does not show the answer ------------------------------------------


def test_api_form_fields_keep_the_answer_from_annotators(client: Any, db: Any, admin_token: str) -> None:
    r = client.post("/api/v1/projects", json={"name": "sms", "schema": SMS_SCHEMA}, headers=auth(admin_token))
    pid = r.json()["id"]
    files = {"files": ("data.csv", io.BytesIO(sms_csv(4).encode()), "text/csv")}
    form = {"annotation_column": ["seed.label=label"], "meta_column": ["origin=id"]}
    r = client.post(f"/api/v1/projects/{pid}/imports", files=files, data=form, headers=auth(admin_token))
    assert r.status_code == 201, r.text
    assert r.json()["result"]["annotations"] == 4 and r.json()["result"]["warnings"] == []
    r = client.patch(f"/api/v1/projects/{pid}", json={"settings": {"overlap": 2}}, headers=auth(admin_token))
    assert r.status_code == 200, r.text
    _, ann = make_user(db, "ann")
    client.post(
        f"/api/v1/projects/{pid}/members",
        json={"user": "ann", "role": "annotator"},
        headers=auth(admin_token),
    )
    r = client.post(f"/api/v1/projects/{pid}/tasks/next", headers=auth(ann))
    assert r.status_code == 200, r.text
    assert r.json()["task"]["item"]["data"] == {"text": "message, number 0"}

    files = {"files": ("more.csv", io.BytesIO(sms_csv(2).encode()), "text/csv")}
    r = client.post(
        f"/api/v1/projects/{pid}/imports",
        files=files,
        data={"on_duplicate": "skip"},
        headers=auth(admin_token),
    )
    assert r.status_code == 201 and r.json()["result"]["warnings"][0].startswith("data field 'label'")
    r = client.post(
        f"/api/v1/projects/{pid}/imports",
        files={"files": ("x.csv", io.BytesIO(sms_csv(2).encode()), "text/csv")},
        data={"gold_column": ["nope=label"]},
        headers=auth(admin_token),
    )
    assert r.status_code == 422 and "no control 'nope'" in r.text


def test_hugging_face_dataset_folder(env: dict[str, Any]) -> None:
    """A `save_to_disk` folder imports without --format; ClassLabel ids become class names."""
    datasets = pytest.importorskip("datasets")
    features = datasets.Features(
        {
            "id": datasets.Value("string"),
            "text": datasets.Value("string"),
            "label": datasets.ClassLabel(names=["ham", "spam"]),
        }
    )
    rows = {"id": ["a", "b", "c"], "text": ["x", "y", "z"], "label": [0, 1, -1]}
    ds = datasets.Dataset.from_dict(rows, features=features)
    ds.save_to_disk(str(env["tmp"] / "one"))
    r = cli("import", "sms", str(env["tmp"] / "one"), "--gold-column", "label", "--db", env["db"])
    assert r.exit_code == 0 and "3 created" in r.stdout, r.output
    got = {row["external_id"]: row for row in export_rows(env)}
    assert got["a"]["data"] == {"text": "x"}
    gold = env["tmp"] / "gold.jsonl"
    assert cli("export", "sms", "--gold", "--out", str(gold), "--db", env["db"]).exit_code == 0
    assert sorted(json.loads(x)["external_id"] for x in gold.read_text().splitlines()) == ["a", "b"]

    split = datasets.Dataset.from_dict({"id": ["d"], "text": ["w"], "label": [1]}, features=features)
    datasets.DatasetDict({"train": split}).save_to_disk(str(env["tmp"] / "dict"))
    r = cli(
        "import", "sms", str(env["tmp"] / "dict"), "--annotation-column", "hf.label=label", "--db", env["db"]
    )
    assert r.exit_code == 0 and "1 annotations" in r.stdout, r.output
    row = {row["external_id"]: row for row in export_rows(env)}["d"]
    assert row["meta"] == {"split": "train"} and row["annotations"][0]["value"] == {"label": "spam"}

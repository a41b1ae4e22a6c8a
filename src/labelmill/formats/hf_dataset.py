"""Reading a Hugging Face dataset folder as ``datasets.Dataset.save_to_disk`` writes it.

The folder holds ``state.json`` (the Arrow files, in order), ``dataset_info.json`` (the features)
and ``data-*.arrow`` files in Arrow's streaming format; a ``DatasetDict`` is a folder of such
folders listed in ``dataset_dict.json``. Rows are read one record batch at a time, their columns
follow the column convention of tables (:mod:`labelmill.formats.columns`), and ``ClassLabel``
columns give their class names rather than integer ids, so ``--gold-column label`` stores
``"spam"``, as a schema's classes expect. A ``DatasetDict``'s split goes to ``meta.split``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from labelmill.formats.columns import ColumnMap
from labelmill.formats.records import FormatError, ImportRecord
from labelmill.formats.tabular import to_json_value

__all__ = ["is_hf_dataset_folder", "read_hf_dataset"]


def is_hf_dataset_folder(path: str | os.PathLike[str]) -> bool:
    p = Path(path)
    return (p / "dataset_dict.json").is_file() or (
        (p / "state.json").is_file() and (p / "dataset_info.json").is_file()
    )


def _load(path: Path, source: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise FormatError(source, 1, path.name, f"cannot read the dataset's {path.name}: {exc}") from None


def _class_names(features: dict[str, Any]) -> dict[str, tuple[list[str], bool]]:
    """Column -> (class names, is a list of them) for ClassLabel and List/Sequence(ClassLabel)."""
    out = {}
    for name, feature in features.items():
        if not isinstance(feature, dict):
            continue
        if feature.get("_type") == "ClassLabel":
            out[name] = (list(feature.get("names") or []), False)
        elif feature.get("_type") in ("Sequence", "List"):
            inner = feature.get("feature")
            if isinstance(inner, dict) and inner.get("_type") == "ClassLabel":
                out[name] = (list(inner.get("names") or []), True)
    return out


def _name(names: list[str], value: Any, source: str, line: int, column: str) -> Any:
    if value is None or value == -1:  # -1: no label
        return None
    if not isinstance(value, int) or not 0 <= value < len(names):
        raise FormatError(source, line, column, f"class id {value!r} is not one of 0..{len(names) - 1}")
    return names[value]


def _read_split(folder: Path, source: str, columns: ColumnMap, split: str | None) -> Iterator[ImportRecord]:
    import pyarrow as pa

    state = _load(folder / "state.json", source)
    info = _load(folder / "dataset_info.json", source)
    classes = _class_names(info.get("features") or {})
    files = [f.get("filename") for f in state.get("_data_files") or [] if isinstance(f, dict)]
    row = 0
    plan = None
    for filename in files:
        path = folder / str(filename)
        try:
            with pa.memory_map(str(path)) as stream:
                reader = pa.ipc.open_stream(stream)
                names = list(reader.schema.names)
                if plan is None:
                    plan = columns.plan(names, source, 1)
                for batch in reader:
                    for values in zip(*(batch.column(i).to_pylist() for i in range(len(names))), strict=True):
                        row += 1
                        cells = [to_json_value(v) for v in values]
                        for i, column in enumerate(names):
                            if column in classes:
                                labels, many = classes[column]
                                cell = cells[i]
                                cells[i] = (
                                    [_name(labels, v, source, row, column) for v in cell or []]
                                    if many
                                    else _name(labels, cell, source, row, column)
                                )
                        rec = plan.record(cells, source, row)
                        if split is not None:
                            rec.meta = {**(rec.meta or {}), "split": split}
                        yield rec
        except (pa.ArrowException, OSError) as exc:
            raise FormatError(source, row + 1, "", f"cannot read {filename}: {exc}") from None


def read_hf_dataset(
    path: str | os.PathLike[str], source_name: str | None = None, *, columns: ColumnMap | None = None
) -> Iterator[ImportRecord]:
    """Stream the rows of a ``save_to_disk`` folder (every split of a ``DatasetDict``, in its order)."""
    folder = Path(path)
    source = source_name or folder.name
    columns = columns or ColumnMap()
    if (folder / "dataset_dict.json").is_file():
        splits = _load(folder / "dataset_dict.json", source).get("splits") or []
        for split in splits:
            yield from _read_split(folder / str(split), f"{source}/{split}", columns, str(split))
    else:
        yield from _read_split(folder, source, columns, None)

"""Tables for people, JSON for scripts (`--output json`)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Sequence
from enum import StrEnum
from typing import Annotated, Any

import typer
from pydantic import BaseModel
from rich.console import Console
from rich.table import Table

console = Console()
err_console = Console(stderr=True)


class OutputFormat(StrEnum):
    TABLE = "table"
    JSON = "json"


OutputOption = Annotated[
    OutputFormat,
    typer.Option("--output", "-o", help="table for people, json for scripts"),
]


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, StrEnum):
        return value.value
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, BaseModel):
        return ", ".join(f"{k}: {_cell(v)}" for k, v in value if v not in (None, [], {}))
    if isinstance(value, dict):
        return ", ".join(f"{_cell(k)}: {_cell(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(_cell(item) for item in value)
    return str(value)


def emit(
    items: BaseModel | Iterable[BaseModel],
    output: OutputFormat,
    columns: Sequence[str],
    *,
    title: str | None = None,
) -> None:
    """Print one object or a list, as a table of `columns` or as full JSON."""
    single = isinstance(items, BaseModel)
    rows: list[BaseModel] = [items] if isinstance(items, BaseModel) else list(items)
    if output == OutputFormat.JSON:
        data = [row.model_dump(mode="json") for row in rows]
        typer.echo(json.dumps(data[0] if single else data, indent=2))
        return
    if single:
        table = Table(show_header=False, title=title, title_justify="left")
        table.add_column("field", style="bold")
        table.add_column("value")
        for name, value in rows[0]:
            table.add_row(name, _cell(value))
    else:
        table = Table(title=title, title_justify="left")
        for column in columns:
            table.add_column(column.replace("_", " ").title(), overflow="fold")
        for row in rows:
            table.add_row(*(_cell(getattr(row, c)) for c in columns))
    console.print(table)

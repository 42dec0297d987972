"""device and update-state tallies: counts kept by triggers, so counting never scans a table

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29

Counting a million devices by GROUP BY took 0.35-0.7 s on PostgreSQL and 0.5-3 s on SQLite
(docs/performance.md), covering index or not. `device_tallies` holds, per tenant and device
group (the nil UUID for none), how many devices have each value of `enabled`, `os_version`
and `last_attestation_result`. Triggers keep it in the same transaction as any change to
`devices`, whoever makes it (claims, moves, attestations), so it is exact; readers sum a few
rows. `update_state_tallies` does the same for `device_update_status`: devices per
(deployment, last reported state), which `device-group show` and the halt rule read.
PostgreSQL uses statement triggers with transition tables (one upsert per statement, however
many rows, keys in sorted order so concurrent writers cannot deadlock); SQLite has row
triggers only. A statement that changes no tallied value updates no tally row. On PostgreSQL
a writer that changes many rows in one transaction should do it in one statement (as the bulk
claim does): thousands of one-row statements would each upsert the same tally rows. All SQL
here is built from the constants below, never from input.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The nil UUID stands for "no device group" / "no deployment" (key columns cannot be NULL).
NIL = {"postgresql": "'00000000-0000-0000-0000-000000000000'::uuid", "sqlite": "'" + "0" * 32 + "'"}


@dataclass(frozen=True)
class Tally:
    """A tally table kept from `source`: per changed row, `keys` get -1 (old) and +1 (new)."""

    table: str
    source: str
    columns: tuple[str, ...]
    keys: Callable[[str, str], list[tuple[str, ...]]]  # (row alias, nil) -> key expressions
    watched: tuple[str, ...]

    def upsert(self, rows: str) -> str:
        names = ", ".join(self.columns)
        grouped = ", ".join(f"column{i + 1}" for i in range(len(self.columns)))
        count = f"column{len(self.columns) + 1}"
        return (
            f"INSERT INTO {self.table} ({names}, count) "  # noqa: S608 - constants only
            f"SELECT {grouped}, sum({count}) FROM ({rows}) AS changes "
            f"GROUP BY {grouped} HAVING sum({count}) <> 0 ORDER BY {grouped} "
            f"ON CONFLICT ({names}) DO UPDATE SET count = {self.table}.count + excluded.count"
        )

    def contributions(self, row: str, sign: str, nil: str, source: str = "") -> str:
        """The (key, ±1) rows one source row adds; `row` is NEW/OLD or a table alias."""
        return " UNION ALL ".join(
            "SELECT "
            + ", ".join(f"{value} AS column{i + 1}" for i, value in enumerate(key))
            + f", {sign} AS column{len(key) + 1}{source}"
            for key in self.keys(row, nil)
        )


DEVICES = Tally(
    table="device_tallies",
    source="devices",
    columns=("tenant_id", "device_group_id", "dimension", "value"),
    keys=lambda row, nil: [
        (
            f"{row}.tenant_id",
            f"coalesce({row}.device_group_id, {nil})",
            f"'{dimension}'",
            value,
        )
        for dimension, value in (
            ("enabled", f"CASE WHEN {row}.enabled THEN '1' ELSE '0' END"),
            ("os_version", f"coalesce({row}.os_version, '')"),
            ("attestation", f"coalesce({row}.last_attestation_result, '')"),
        )
    ],
    watched=("tenant_id", "device_group_id", "enabled", "os_version", "last_attestation_result"),
)
UPDATE_STATES = Tally(
    table="update_state_tallies",
    source="device_update_status",
    columns=("deployment_id", "tenant_id", "state"),
    keys=lambda row, nil: [
        (f"coalesce({row}.deployment_id, {nil})", f"{row}.tenant_id", f"{row}.state")
    ],
    watched=("deployment_id", "tenant_id", "state"),
)


def _postgresql(tally: Tally) -> None:
    nil = NIL["postgresql"]
    for name, transitions, parts in (
        ("insert", "NEW TABLE AS new_rows", [("n", "1", " FROM new_rows AS n")]),
        ("delete", "OLD TABLE AS old_rows", [("o", "-1", " FROM old_rows AS o")]),
        (
            "update",
            "OLD TABLE AS old_rows NEW TABLE AS new_rows",
            [("o", "-1", " FROM old_rows AS o"), ("n", "1", " FROM new_rows AS n")],
        ),
    ):
        rows = " UNION ALL ".join(
            tally.contributions(row, sign, nil, source) for row, sign, source in parts
        )
        op.execute(
            f"CREATE FUNCTION {tally.table}_{name}() RETURNS trigger LANGUAGE plpgsql AS $$ "
            f"BEGIN {tally.upsert(rows)}; RETURN NULL; END $$"
        )
        op.execute(
            f"CREATE TRIGGER {tally.table}_{name} AFTER {name.upper()} ON {tally.source} "
            f"REFERENCING {transitions} FOR EACH STATEMENT "
            f"EXECUTE FUNCTION {tally.table}_{name}()"
        )


def _sqlite(tally: Tally) -> None:
    nil = NIL["sqlite"]
    changed = " OR ".join(f"OLD.{column} IS NOT NEW.{column}" for column in tally.watched)
    for name, when, parts in (
        ("insert", "", [("NEW", "1")]),
        ("delete", "", [("OLD", "-1")]),
        ("update", f" WHEN {changed}", [("OLD", "-1"), ("NEW", "1")]),
    ):
        rows = " UNION ALL ".join(tally.contributions(row, sign, nil) for row, sign in parts)
        op.execute(
            f"CREATE TRIGGER {tally.table}_{name} AFTER {name.upper()} ON {tally.source}{when} "
            f"BEGIN {tally.upsert(rows)}; END"
        )


def upgrade() -> None:
    op.create_table(
        "device_tallies",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("device_group_id", sa.Uuid(), nullable=False),
        sa.Column("dimension", sa.String(length=16), nullable=False),
        sa.Column("value", sa.String(length=64), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"]),
        sa.PrimaryKeyConstraint("tenant_id", "device_group_id", "dimension", "value"),
    )
    op.create_table(
        "update_state_tallies",
        sa.Column("deployment_id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"]),
        sa.PrimaryKeyConstraint("deployment_id", "tenant_id", "state"),
    )
    dialect = op.get_bind().dialect.name
    for tally in (DEVICES, UPDATE_STATES):
        source = f" FROM {tally.source} AS s"
        op.execute(tally.upsert(tally.contributions("s", "1", NIL[dialect], source)))
        _postgresql(tally) if dialect == "postgresql" else _sqlite(tally)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for tally in (DEVICES, UPDATE_STATES):
        for name in ("insert", "delete", "update"):
            if dialect == "postgresql":
                op.execute(f"DROP TRIGGER {tally.table}_{name} ON {tally.source}")
                op.execute(f"DROP FUNCTION {tally.table}_{name}()")
            else:
                op.execute(f"DROP TRIGGER {tally.table}_{name}")
        op.drop_table(tally.table)

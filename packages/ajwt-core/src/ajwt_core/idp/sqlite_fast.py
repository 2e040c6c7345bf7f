"""Core statements on SQLite straight through the driver (issue 17).

SQLAlchemy's execution of a cached Core statement costs 60–100 µs of Python (an
execution context, parameter processing, a result object) around a SQLite call of
5–10 µs, and the IdP runs several per request. :func:`execute` runs the same statement
on the same DBAPI connection (so in the same transaction) with the SQL, the bind
processors and the result processors SQLAlchemy compiled for it, once per statement
and set of parameter names; rows come back as tuples with attribute and ``_mapping``
access, like SQLAlchemy's. Driver errors are wrapped as SQLAlchemy wraps them
(:class:`~sqlalchemy.exc.IntegrityError`, :class:`~sqlalchemy.exc.OperationalError`…),
so callers and the outage handling see the same exceptions.

A statement this does not reproduce exactly (Python-side column defaults, RETURNING,
a parameter without a value, column names that are not identifiers) is answered
``None`` by :func:`compiled_for`, and the caller uses SQLAlchemy.
"""

from __future__ import annotations

import sqlite3
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Final, cast

from sqlalchemy import Delete, Insert, Select, Update
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ClauseElement

#: Compiled statements kept (module constants; a statement built per call takes one
#: entry each time and ages out).
MAX_COMPILED: Final = 256

Processor = Callable[[Any], Any]


class FastRow(tuple[Any, ...]):
    """A result row: a tuple, its columns also as attributes and as ``_mapping``."""

    __slots__ = ()
    _fields: tuple[str, ...] = ()
    _index: dict[str, int] = {}  # noqa: RUF012 - set per statement on the subclass

    def __getattr__(self, name: str) -> Any:
        try:
            return self[self._index[name]]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def _mapping(self) -> dict[str, Any]:
        return dict(zip(self._fields, self, strict=True))


def _row_class(fields: tuple[str, ...]) -> type[FastRow]:
    return type(
        "FastRow",
        (FastRow,),
        {"__slots__": (), "_fields": fields, "_index": {f: i for i, f in enumerate(fields)}},
    )


class FastResult:
    """The rows of one execution (fetched at once) and its row count."""

    __slots__ = ("_rows", "rowcount")

    def __init__(self, rows: list[FastRow], rowcount: int) -> None:
        self._rows = rows
        self.rowcount = rowcount

    def all(self) -> list[FastRow]:
        return self._rows

    def first(self) -> FastRow | None:
        return self._rows[0] if self._rows else None

    def one_or_none(self) -> FastRow | None:
        if len(self._rows) > 1:
            raise sa_exc.MultipleResultsFound(
                "Multiple rows were found when one or none was required"
            )
        return self.first()

    def __iter__(self) -> Iterator[FastRow]:
        return iter(self._rows)


class FastStatement:
    """A statement compiled for the SQLite driver: SQL, parameters in order, processors."""

    __slots__ = ("binds", "convert", "many", "processors", "row", "sql", "statement")

    def __init__(
        self,
        statement: ClauseElement,
        sql: str,
        binds: list[tuple[str, Processor | None, Any, bool]],
        row: type[FastRow] | None,
        processors: list[Processor | None] | None,
        many: bool,
    ) -> None:
        self.statement = statement  # held: the cache is keyed by its id
        self.sql = sql
        self.binds = binds
        self.row = row
        self.processors = processors
        self.many = many
        #: The columns to convert (JSON, booleans), by index: most are taken as read.
        self.convert = [(i, p) for i, p in enumerate(processors or ()) if p is not None]

    def _values(self, params: Mapping[str, Any]) -> list[Any]:
        values = []
        for name, process, default, required in self.binds:
            if name in params:
                value = params[name]
            elif required:
                raise sa_exc.InvalidRequestError(f"A value is required for bind parameter {name!r}")
            else:
                value = default
            values.append(value if process is None else process(value))
        return values

    def run(
        self,
        connection: Any,
        params: Mapping[str, Any] | Sequence[Mapping[str, Any]],
    ) -> FastResult:
        """Execute on ``connection`` (the ``sqlite3`` connection under SQLAlchemy's, in
        its transaction), once or, for a list of parameter sets, as one executemany."""
        driver = cast(sqlite3.Connection, connection)
        many = not isinstance(params, Mapping)
        try:
            if isinstance(params, Mapping):
                cursor = driver.execute(self.sql, self._values(params))
            else:
                cursor = driver.executemany(self.sql, [self._values(p) for p in params])
            try:
                raw = cursor.fetchall() if self.row is not None else []
                rowcount = cursor.rowcount
            finally:
                cursor.close()
        except sqlite3.Error as exc:
            raise sa_exc.DBAPIError.instance(
                self.sql, None, exc, sqlite3.Error, ismulti=many
            ) from exc
        if self.row is None:
            return FastResult([], rowcount)
        make, convert = self.row, self.convert
        if not convert:
            return FastResult([make(r) for r in raw], rowcount)
        rows = []
        for r in raw:
            values = list(r)
            for i, process in convert:
                value = values[i]
                if value is not None:  # as SQLAlchemy's processors answer None
                    values[i] = process(value)
            rows.append(make(values))
        return FastResult(rows, rowcount)


class FastCache:
    """Statements compiled for one SQLite dialect, by statement and parameter names."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self._compiled: OrderedDict[tuple[int, tuple[str, ...], bool], FastStatement | None] = (
            OrderedDict()
        )

    def compiled_for(
        self, statement: Any, params: Mapping[str, Any] | Sequence[Mapping[str, Any]]
    ) -> FastStatement | None:
        """The statement compiled for ``params``' names (as SQLAlchemy would compile it
        for them), or ``None`` when only SQLAlchemy can run it."""
        many = not isinstance(params, Mapping)
        if isinstance(params, Mapping):
            first: Any = params
        else:
            first = params[0] if params else None
        if not isinstance(first, Mapping):
            return None
        keys = tuple(sorted(first))
        key = (id(statement), keys, many)
        if key in self._compiled:
            found = self._compiled[key]
            if found is None or found.statement is statement:
                return found
        compiled = _compile(self.dialect, statement, keys, many)
        self._compiled[key] = compiled
        if len(self._compiled) > MAX_COMPILED:
            self._compiled.popitem(last=False)
        return compiled


def _compile(
    dialect: Dialect, statement: Any, keys: tuple[str, ...], many: bool
) -> FastStatement | None:
    if not isinstance(statement, Select | Insert | Update | Delete):
        return None  # text() and the rest: SQLAlchemy knows what they return
    try:
        compiled = statement.compile(dialect=dialect, column_keys=list(keys), for_executemany=many)
    except sa_exc.SQLAlchemyError:
        return None
    if not isinstance(compiled, SQLCompiler) or dialect.paramstyle != "qmark":
        return None
    if compiled.insert_prefetch or compiled.update_prefetch or compiled.returning:
        return None  # Python-side defaults or RETURNING: SQLAlchemy's own handling
    by_name = {name: bind for bind, name in compiled.bind_names.items()}
    if any(b.callable is not None or (b.expanding and b.value is None) for b in by_name.values()):
        return None  # values decided per execution
    try:
        # Expanding parameters (an IN of a constant list) rendered once, as SQLAlchemy
        # renders them for each execution.
        state = compiled._process_parameters_for_postcompile(
            compiled.construct_params(_check=False, _no_postcompile=True)
        )
    except sa_exc.SQLAlchemyError:
        return None
    if state.positiontup is None:
        return None
    # The expanded names' processors (if any) beside the statement's own.
    processors = {**compiled._bind_processors, **state.processors}
    binds: list[tuple[str, Processor | None, Any, bool]] = []
    for name in state.positiontup:
        bind = by_name.get(name)
        if bind is not None and bind.expanding:
            return None
        process = processors.get(name)
        if process is not None and not callable(process):
            return None  # a tuple type's processors
        required = bind is not None and bind.required
        binds.append((name, process, state.parameters.get(name), required))
    row: type[FastRow] | None = None
    result_processors: list[Processor | None] | None = None
    if isinstance(statement, Select):
        fields = tuple(entry.keyname for entry in compiled._result_columns)
        if not fields or len(set(fields)) != len(fields):
            return None
        if not all(f.isidentifier() and not f.startswith("_") for f in fields):
            return None
        row = _row_class(fields)
        result_processors = [
            entry.type._cached_result_processor(dialect, None) for entry in compiled._result_columns
        ]
    elif compiled._result_columns:
        return None
    return FastStatement(statement, state.statement, binds, row, result_processors, many)


__all__ = ["FastCache", "FastResult", "FastRow", "FastStatement"]

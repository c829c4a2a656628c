"""What the item and store lists share: the name filter (`q`) and the name
order, each the same on SQLite and PostgreSQL.

- `name_contains`: a case-insensitive substring match in which `%`, `_` and
  `\\` are plain characters. On PostgreSQL it reads `name_lower`, a column
  the database itself keeps equal to `lower(name)` (migration 0006: folding
  case under a linguistic collation costs more than the scan), with a
  trigram index; SQLite's `lower()` folds only ASCII, so there it is Python's
  `str.lower`, registered on each connection as `unicode_lower`
  (app.sqlite_pragmas).
- `code_point_order`: names sorted by Unicode code point. SQLite's default
  (BINARY) collation already compares UTF-8 bytes, which is code point order;
  PostgreSQL needs `COLLATE "C"` (and an index with that collation).
- `sorted_after_matching`: the sort key in a form no index serves, for lists
  filtered by `q` (see there).
- `plain_rows`: a list's rows as the driver's own tuples.
- `one_page`: a page of rows and the total, counting only when it must.
"""

from sqlalchemy import String, func, literal_column

from db import db

LIKE_ESCAPE = "\\"


def is_postgresql():
    return db.session.get_bind().dialect.name == "postgresql"


def literal_pattern(text):
    """`text` as a LIKE pattern matching it anywhere, its wildcards escaped."""
    for special in (LIKE_ESCAPE, "%", "_"):
        text = text.replace(special, LIKE_ESCAPE + special)
    return f"%{text}%"


def name_contains(model, q):
    """`model`'s name contains `q`, ignoring case."""
    if is_postgresql():
        folded = literal_column(f"{model.__tablename__}.name_lower")
    else:
        folded = func.unicode_lower(model.name)
    return folded.like(literal_pattern(q.lower()), escape=LIKE_ESCAPE)


def code_point_order(column):
    return column.collate("C") if is_postgresql() else column


def sorted_after_matching(key):
    """`key` (a column or `code_point_order(name)`) in a form no index serves,
    sorting the same. With `q`, the planner then finds the matching rows first
    (through the trigram index, or one scan) and sorts only those, a cost
    bounded by the matches. Walking an index in sort order and filtering is
    quicker when matches are spread evenly, and reads almost the whole table
    when they are bunched at the far end, as a name's first word is in a name
    sort: 110 ms against 22 ms for `q=chair&sort=-name` at 200,000 items
    (bench/RESULTS.md, "Filters at scale")."""
    return key + ("" if isinstance(key.type, String) else 0)


def plain_rows(statement, parameters=None):
    """Every row of `statement` as the driver hands it over (plain tuples), for
    the lists' up to 1,000 rows: SQLAlchemy's Row objects and their type
    processing cost about as much again as the driver's fetch. The columns must
    need no conversion (ITEM_COLUMNS reads the price as a float)."""
    result = db.session.connection().execute(statement, parameters)
    # What Result.all() itself calls before it builds a Row per row: rows a
    # buffering strategy already read are kept, and a driver error is still
    # raised as SQLAlchemy's DBAPIError (core/errors.py: 503).
    return result.cursor_strategy.fetchall(result, result.cursor)


def one_page(fetch, count, page, per_page):
    """(rows, total) of page `page`: `fetch(limit, offset)` reads rows, `count()`
    the total. The first page asks for one row more than it shows: when that
    row is not there, the rows are all there is and no count runs (most lists
    fit on one page). Any other page counts first, so a page past the end
    costs the count alone, never an OFFSET scan."""
    if page == 1:
        rows = fetch(per_page + 1, 0)
        if len(rows) <= per_page:
            return rows, len(rows)
        # Counted after the rows, in a snapshot of its own (reads run in
        # autocommit): never fewer than the rows just seen.
        return rows[:per_page], max(count(), len(rows))
    total = count()
    offset = (page - 1) * per_page
    if offset >= total:
        return [], total
    return fetch(per_page, offset), total

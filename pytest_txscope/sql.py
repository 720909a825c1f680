"""One SQL text for every backend: portable placeholders, and splitting scripts into statements.

The portable form is the one SQLite understands natively: ``:name`` placeholders with a mapping of parameters,
or ``?`` placeholders with a sequence. For drivers that use ``%s`` / ``%(name)s`` (psycopg, PyMySQL) the text is
rewritten once and cached: placeholders are replaced and literal ``%`` signs doubled. Quoted strings, quoted
identifiers, comments, PostgreSQL dollar-quoted bodies and ``::`` casts are left alone.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from .errors import ParameterError

__all__ = ["ConvertedSQL", "NumericSQL", "PyformatConverter", "pyformat_to_numeric", "split_statements"]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DOLLAR_TAG = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$")
_CACHE_LIMIT = 2048


def _scan(
    sql: str, *, backslash_escapes: bool, hash_comments: bool, dollar_quotes: bool = True
) -> Iterator[tuple[str, str]]:
    """Yield ``(kind, text)`` pieces: ``code`` (plain SQL), ``quoted`` (strings, identifiers, comments)."""
    i = 0
    n = len(sql)
    start = 0
    while i < n:
        c = sql[i]
        end = -1
        if c in "'\"`":
            escapes = backslash_escapes or (c == "'" and i > 0 and sql[i - 1] in "eE")
            j = i + 1
            while j < n:
                d = sql[j]
                if escapes and d == "\\":
                    j += 2
                    continue
                if d == c:
                    if j + 1 < n and sql[j + 1] == c:  # doubled quote inside the quoted span
                        j += 2
                        continue
                    break
                j += 1
            end = min(j + 1, n)
        elif (c == "-" and sql.startswith("--", i)) or (c == "#" and hash_comments):
            j = sql.find("\n", i)
            end = n if j < 0 else j
        elif c == "/" and sql.startswith("/*", i):
            j = sql.find("*/", i + 2)
            end = n if j < 0 else j + 2
        elif c == "$" and dollar_quotes:
            m = _DOLLAR_TAG.match(sql, i)
            if m and (i == 0 or not (sql[i - 1].isalnum() or sql[i - 1] == "_")):
                j = sql.find(m.group(0), m.end())
                end = n if j < 0 else j + len(m.group(0))
        if end >= 0:
            if start < i:
                yield "code", sql[start:i]
            yield "quoted", sql[i:end]
            i = start = end
        else:
            i += 1
    if start < n:
        yield "code", sql[start:]


def split_statements(
    script: str,
    *,
    backslash_escapes: bool = False,
    hash_comments: bool = False,
    mysql_client: bool = False,
) -> list[str]:
    """Split an SQL script on ``;`` outside quotes, comments and routine bodies; empty statements are dropped.

    A ``;`` inside the ``BEGIN ... END`` body of ``CREATE TRIGGER / PROCEDURE / FUNCTION / EVENT`` (SQLite and
    MySQL triggers, MySQL routines, PostgreSQL ``BEGIN ATOMIC``) or of MariaDB's ``BEGIN NOT ATOMIC`` ends no
    statement. With ``mysql_client`` (MySQL/MariaDB), ``DELIMITER //`` lines work as in the ``mysql`` client
    and its dumps: until the next ``DELIMITER ;`` statements end at ``//``; ``$`` starts no dollar quote there.
    """
    splitter = _Splitter(mysql_client)
    flags = {"backslash_escapes": backslash_escapes, "hash_comments": hash_comments}
    for kind, text in _scan(script, dollar_quotes=not mysql_client, **flags):
        if kind == "quoted":
            splitter.quoted(text)
        else:
            splitter.code(text)
    splitter.end_statement()
    return [s.strip() for s in splitter.statements if _has_code(s, mysql_client, **flags)]


_ROUTINES = frozenset({"TRIGGER", "PROCEDURE", "FUNCTION", "EVENT"})
# Words that name what CREATE creates: the first one after CREATE tells whether a body with BEGIN follows.
_OBJECT_KINDS = _ROUTINES | {
    "TABLE", "VIEW", "INDEX", "SEQUENCE", "TYPE", "SCHEMA", "DATABASE", "DOMAIN", "EXTENSION", "ROLE", "USER",
    "RULE", "POLICY", "AGGREGATE", "OPERATOR", "CAST", "COLLATION", "SERVER", "TABLESPACE", "STATISTICS",
}  # fmt: skip
_ENDS_NOTHING_OPENED = frozenset(
    {"IF", "LOOP", "WHILE", "REPEAT", "FOR"}
)  # END IF...: MySQL's IF is not counted
_DELIMITER_LINE = re.compile(r"[ \t\r\n]*DELIMITER[ \t]+(\S+)[ \t]*(?:\r?\n|$)", re.IGNORECASE)
_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*|;")


class _Splitter:
    """Cuts the pieces `_scan` yields into statements, counting ``BEGIN``/``CASE`` ... ``END`` in routines."""

    def __init__(self, mysql_client: bool) -> None:
        self.mysql_client = mysql_client
        self.delimiter = ";"
        self.statements: list[str] = []
        self.current: list[str] = []
        self.begun = False  # the statement has more than blanks and comments
        self.words: list[str] = []  # its first words (upper case): enough to know what it creates
        self.routine = False
        self.depth = 0
        self.after_end = False

    def quoted(self, text: str) -> None:
        self.current.append(text)
        self.begun = self.begun or not _is_comment(text, self.mysql_client)

    def end_statement(self) -> None:
        self.statements.append("".join(self.current))
        self.current, self.words, self.begun = [], [], False
        self.routine, self.depth, self.after_end = False, 0, False

    def code(self, text: str) -> None:
        position = 0
        while True:
            if self.mysql_client and not self.begun:
                found = _DELIMITER_LINE.match(text, position)
                if found:  # a command of the mysql client, not SQL: it is not sent
                    self.delimiter, position = found.group(1), found.end()
                    continue
            if self.delimiter != ";":  # the client's own delimiter: only it ends a statement
                end = text.find(self.delimiter, position)
                self._append(text[position:] if end < 0 else text[position:end])
                if end < 0:
                    return
                self.end_statement()
                position = end + len(self.delimiter)
                continue
            token = _TOKEN.search(text, position)
            if token is None:
                self._append(text[position:])
                return
            if token.group() == ";":
                self._append(text[position : token.start()])
                if self.after_end:
                    self._close()
                if self.depth == 0:
                    self.end_statement()
                else:
                    self.current.append(";")
            else:
                self._append(text[position : token.end()])
                self._word(token.group().upper())
            position = token.end()

    def _append(self, text: str) -> None:
        self.current.append(text)
        self.begun = self.begun or bool(text.strip())

    def _close(self) -> None:
        self.after_end = False
        self.depth = max(0, self.depth - 1)

    def _word(self, word: str) -> None:
        if len(self.words) < 12:
            self.words.append(word)
            self._classify()
        if self.after_end:  # END IF / END LOOP close nothing counted; END CASE, END label close one
            if word in _ENDS_NOTHING_OPENED:
                self.after_end = False
            else:
                self._close()
        elif self.routine and word in ("BEGIN", "CASE"):
            self.depth += 1
        elif self.routine and word == "END":
            self.after_end = True

    def _classify(self) -> None:
        words = self.words
        if words == ["BEGIN", "NOT"]:  # MariaDB's BEGIN NOT ATOMIC ... END block
            self.routine, self.depth = True, 1
        elif (
            words[0] == "CREATE"
            and len(words) > 1
            and words[-1] in _OBJECT_KINDS
            and not any(w in _OBJECT_KINDS for w in words[1:-1])
        ):
            self.routine = words[-1] in _ROUTINES


def _has_code(statement: str, mysql_client: bool, *, backslash_escapes: bool, hash_comments: bool) -> bool:
    for kind, text in _scan(
        statement,
        backslash_escapes=backslash_escapes,
        hash_comments=hash_comments,
        dollar_quotes=not mysql_client,
    ):
        if kind == "code" and text.strip():
            return True
        if kind == "quoted" and not _is_comment(text, mysql_client):
            return True
    return False


def _is_comment(text: str, mysql_client: bool) -> bool:
    # MySQL runs what /*! ... */ holds (mysqldump writes whole statements so): it is code there.
    return text.startswith(("--", "/*", "#")) and not (mysql_client and text.startswith("/*!"))


@dataclass(frozen=True)
class ConvertedSQL:
    """A statement rewritten for a ``pyformat`` driver, with the placeholders it expects."""

    text: str
    names: frozenset[str]
    positional: int


class PyformatConverter:
    """Rewrites portable placeholders (``:name``, ``?``) into ``%(name)s`` / ``%s``, caching the result."""

    def __init__(self, *, backslash_escapes: bool, hash_comments: bool) -> None:
        self._backslash_escapes = backslash_escapes
        self._hash_comments = hash_comments
        self._named: dict[str, ConvertedSQL] = {}
        self._positional: dict[str, ConvertedSQL] = {}

    def convert(self, sql: str, params: object) -> tuple[str, object]:
        """Return the driver's SQL text and parameters for portable ``sql`` and ``params``."""
        if params is None:
            return sql, None
        if isinstance(params, Mapping):
            converted = self._named.get(sql) or self._remember(self._named, sql, named=True)
            missing = converted.names.difference(params)
            if missing:
                raise ParameterError(
                    f"no value for placeholder(s) {', '.join(':' + m for m in sorted(missing))} in {sql!r}; "
                    "pass them in the parameter mapping"
                )
            return converted.text, params
        if isinstance(params, Sequence) and not isinstance(params, str | bytes):
            converted = self._positional.get(sql) or self._remember(self._positional, sql, named=False)
            if converted.positional != len(params):
                raise ParameterError(
                    f"{sql!r} has {converted.positional} '?' placeholder(s) but {len(params)} parameter(s) "
                    "were given; pass one value per '?', or use :name placeholders with a mapping"
                )
            return converted.text, params
        raise ParameterError(
            f"parameters must be a mapping (for :name placeholders) or a sequence (for ?), "
            f"not {type(params).__name__}"
        )

    def _remember(self, cache: dict[str, ConvertedSQL], sql: str, *, named: bool) -> ConvertedSQL:
        if len(cache) >= _CACHE_LIMIT:
            cache.clear()
        converted = self._rewrite(sql, named=named)
        cache[sql] = converted
        return converted

    def _rewrite(self, sql: str, *, named: bool) -> ConvertedSQL:
        out: list[str] = []
        names: set[str] = set()
        positional = 0
        for kind, text in _scan(
            sql, backslash_escapes=self._backslash_escapes, hash_comments=self._hash_comments
        ):
            if kind == "quoted":
                out.append(text.replace("%", "%%"))
                continue
            i = 0
            while i < len(text):
                c = text[i]
                if c == "%":
                    out.append("%%")
                elif c == ":" and named:
                    if text.startswith("::", i):  # PostgreSQL cast
                        out.append("::")
                        i += 2
                        continue
                    m = _NAME.match(text, i + 1)
                    if m and (i == 0 or text[i - 1] != ":"):
                        names.add(m.group(0))
                        out.append(f"%({m.group(0)})s")
                        i = m.end()
                        continue
                    out.append(c)
                elif c == "?" and not named:
                    positional += 1
                    out.append("%s")
                else:
                    out.append(c)
                i += 1
        return ConvertedSQL("".join(out), frozenset(names), positional)


@dataclass(frozen=True)
class NumericSQL:
    """A ``pyformat`` statement rewritten with PostgreSQL's own ``$1, $2...`` placeholders (asyncpg)."""

    text: str
    names: tuple[str, ...]
    """For ``%(name)s`` placeholders, the name each ``$n`` stands for, in order; empty for ``%s``."""
    positional: int
    """How many ``%s`` placeholders there were."""


_numeric_cache: dict[str, NumericSQL] = {}
_PYFORMAT = re.compile(r"%(?:\(([A-Za-z_][A-Za-z0-9_]*)\))?([s%])")


def pyformat_to_numeric(sql: str) -> NumericSQL:
    """Rewrite ``%s`` / ``%(name)s`` placeholders (and ``%%``) as ``$n``, leaving quoted text alone; cached.

    asyncpg takes only the server's own numbered placeholders, while the core and the DB-API faces speak
    psycopg's ``pyformat``: one repeated name is one ``$n``, as the server binds it once.
    """
    found = _numeric_cache.get(sql)
    if found is not None:
        return found
    out: list[str] = []
    names: list[str] = []
    positional = 0
    for kind, text in _scan(sql, backslash_escapes=False, hash_comments=False):
        if kind == "quoted":
            out.append(text.replace("%%", "%"))
            continue
        pieces: list[str] = []
        last = 0
        for m in _PYFORMAT.finditer(text):
            pieces.append(text[last : m.start()])
            last = m.end()
            if m.group(2) == "%":
                pieces.append("%")
            elif m.group(1) is not None:
                if m.group(1) not in names:
                    names.append(m.group(1))
                pieces.append(f"${names.index(m.group(1)) + 1}")
            else:
                positional += 1
                pieces.append(f"${positional}")
        pieces.append(text[last:])
        out.append("".join(pieces))
    if names and positional:
        raise ParameterError(f"{sql!r} mixes %s and %(name)s placeholders; use one style")
    if len(_numeric_cache) >= _CACHE_LIMIT:
        _numeric_cache.clear()
    converted = _numeric_cache[sql] = NumericSQL("".join(out), tuple(names), positional)
    return converted

"""JQL, the subset the Jira sandbox answers: parsed into a `Query` and evaluated on its issues.

Clauses `field operator value(s)` joined by AND / OR / NOT and parentheses, then an optional
ORDER BY. Operators: `=`, `!=`, `in`, `not in`, `is [not] EMPTY|NULL`, `~`/`!~` on text fields,
and `>`, `>=`, `<`, `<=` on dates. Fields: project (key, name or id), key/issuekey/issue/id,
status, statusCategory, resolution, priority, type/issuetype, summary/text, description, labels,
and the dates updated/updatedDate, created/createdDate, resolved/resolutiondate. A date literal is
`yyyy-MM-dd[ HH:mm]` or `yyyy/MM/dd[ HH:mm]` read in the user's time zone, or a period relative
to the server clock (`-15m`, `-2d`, `1w`), at minute granularity, as Jira does.

Everything Jira would answer with 400 raises `JqlError` whose message is Jira's errorMessages
entry. What the query needs to know of the site (projects, statuses, time zone, clock, priority
scheme) it asks a `JqlSite`; the Jira sandbox is one.

    query = parse('project = ABC AND updated >= "2025-05-01 10:00" ORDER BY updated', site)
    issues = query.select(all_issues)  # the matches, in the query's order
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, Protocol, TypeVar


class JqlError(ValueError):
    """A query Jira would reject with 400; the message is Jira's errorMessages entry."""


class JqlIssue(Protocol):
    """What JQL reads of an issue (the Jira sandbox's `SandboxIssue` has it all)."""

    @property
    def id(self) -> str: ...
    @property
    def key(self) -> str: ...
    @property
    def project(self) -> str: ...
    @property
    def summary(self) -> str: ...
    @property
    def description(self) -> str | None: ...
    @property
    def status(self) -> str: ...
    @property
    def resolution(self) -> str | None: ...
    @property
    def priority(self) -> str | None: ...
    @property
    def issuetype(self) -> str: ...
    @property
    def labels(self) -> Sequence[str]: ...
    @property
    def updated(self) -> datetime: ...
    @property
    def created(self) -> datetime: ...
    @property
    def resolutiondate(self) -> datetime | None: ...


class JqlSite(Protocol):
    """What JQL needs to know of the Jira site a query runs on."""

    @property
    def statuses(self) -> Mapping[str, str]:
        """The workflow's status names (-> status category key)."""
        ...

    def now(self) -> datetime:
        """The server clock (aware), for relative dates such as `-15m`."""
        ...

    def zone(self) -> tzinfo:
        """The user's time zone, in which absolute dates are read."""
        ...

    def project_of(self, value: str) -> str:
        """The key of the project a value names (key, name or id), else JqlError."""
        ...

    def status_category_name(self, status: str) -> str:
        """The name of a status's category ("To Do", "In Progress", "Done", "No Category")."""
        ...

    def priority_rank(self, priority: str) -> int:
        """Where a priority sorts (its id in the site's priority scheme)."""
        ...


IssueT = TypeVar("IssueT", bound=JqlIssue)
Predicate = Callable[[JqlIssue], bool]
#: The order of a query without ORDER BY: key descending, as Jira's search answers.
DEFAULT_ORDER: tuple[tuple[str, bool], ...] = (("key", True),)


@dataclass(frozen=True, slots=True)
class Query:
    """A parsed query: `where` tests one issue; `order` is the ORDER BY as (field, descending),
    field names canonical (updated, created, key, id, summary, status, priority), empty without
    ORDER BY."""

    where: Predicate
    order: tuple[tuple[str, bool], ...]
    site: JqlSite = field(repr=False)

    def select(self, issues: Iterable[IssueT]) -> list[IssueT]:
        """The issues the query returns, in its order (`DEFAULT_ORDER` without ORDER BY)."""
        found = [issue for issue in issues if self.where(issue)]
        for name, descending in reversed(self.order or DEFAULT_ORDER):
            found.sort(key=_sort_key(name, self.site), reverse=descending)
        return found


def parse(jql: str, site: JqlSite) -> Query:
    """Parse a JQL query against `site` (unknown projects, statuses and fields are JqlError)."""
    where, order = _Parser(jql, site).parse()
    return Query(where, tuple(order), site)


def evaluate(jql: str, issues: Iterable[IssueT], site: JqlSite) -> list[IssueT]:
    """The issues a JQL query returns, in its order; JqlError where Jira would answer 400."""
    return parse(jql, site).select(issues)


#: Jira Cloud's answer (400) to a query without a search restriction on the enhanced search.
UNBOUNDED = (
    "Unbounded JQL queries are not allowed here. Please add a search restriction to your query."
)


def is_bounded(jql: str, site: JqlSite) -> bool:
    """Whether a query has a search restriction (a clause before any ORDER BY): Jira Cloud's
    `search/jql` refuses one that has none ("requires a bounded query", its OpenAPI says)."""
    parser = _Parser(jql, site)
    return not (parser.is_word("order") or parser.peek().kind == "end")


def _key_order(issue: JqlIssue) -> tuple[str, int]:
    return issue.project, int(issue.key.rsplit("-", 1)[1])


_SORT_KEYS: dict[str, Callable[[JqlIssue], Any]] = {
    "updated": lambda i: i.updated,
    "created": lambda i: i.created,
    "key": _key_order,
    "id": lambda i: int(i.id),
    "summary": lambda i: i.summary.casefold(),
    "status": lambda i: i.status.casefold(),
}
#: The fields ORDER BY accepts (after `_SORT_ALIASES`).
SORT_FIELDS = frozenset({*_SORT_KEYS, "priority"})
_SORT_ALIASES = {"updateddate": "updated", "createddate": "created", "issuekey": "key"}


def _sort_key(name: str, site: JqlSite) -> Callable[[JqlIssue], Any]:
    if name == "priority":  # in the order of the site's priority scheme; none sorts last
        return lambda i: site.priority_rank(i.priority) if i.priority else 10**9
    return _SORT_KEYS[name]


# ---------------------------------------------------------------------------------------------
# A JQL subset: clauses joined by AND / OR / NOT and parentheses, ORDER BY.
# ---------------------------------------------------------------------------------------------
_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
      | (?P<op>!=|!~|>=|<=|=|>|<|~|\(|\)|,)
      | (?P<word>[A-Za-z0-9_.\-\[\]:/+*]+)
    )""",
    re.VERBOSE | re.DOTALL,
)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "'": "'", "\\": "\\", " ": " "}
_DATE_FORMATS = ("%Y-%m-%d %H:%M", "%Y/%m/%d %H:%M", "%Y-%m-%d", "%Y/%m/%d")
_RELATIVE = re.compile(r"([-+]?)(\d+)([wdhm])")
_UNIT = {"w": timedelta(weeks=1), "d": timedelta(days=1), "h": timedelta(hours=1)}
_UNIT["m"] = timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class _Tok:
    kind: str  # string | op | word | end
    text: str  # the value (unescaped for strings)
    at: int


def _tokenize(jql: str) -> list[_Tok]:
    tokens: list[_Tok] = []
    pos = 0
    while pos < len(jql):
        if jql[pos:].strip() == "":
            break
        m = _TOKEN.match(jql, pos)
        if m is None or m.end() == pos:
            bad = jql[pos:].lstrip()[:1]
            if bad in "\"'":
                raise JqlError(f"Error in the JQL Query: unterminated string at character {pos}.")
            raise JqlError(
                f"Error in the JQL Query: The character '{bad}' is a reserved JQL character. You "
                f"must enclose it in a string or use the escape '\\u{ord(bad):04x}' instead."
            )
        kind = m.lastgroup or "word"
        text = m.group(kind)
        if kind == "string":
            text = _unescape(text[1:-1], m.start(kind))
        tokens.append(_Tok(kind, text, m.start(kind)))
        pos = m.end()
    tokens.append(_Tok("end", "", len(jql)))
    return tokens


def _unescape(body: str, at: int) -> str:
    out = []
    i = 0
    while i < len(body):
        c = body[i]
        if c == "\\":
            nxt = body[i + 1 : i + 2]
            if nxt == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", body[i + 2 : i + 6]):
                out.append(chr(int(body[i + 2 : i + 6], 16)))
                i += 6
                continue
            if nxt not in _ESCAPES:
                raise JqlError(
                    f"Error in the JQL Query: illegal escape sequence at character {at}."
                )
            out.append(_ESCAPES[nxt])
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


class _Parser:
    """Recursive descent over the tokens; builds a predicate and the ORDER BY list."""

    def __init__(self, jql: str, site: JqlSite) -> None:
        self.tokens = _tokenize(jql)
        self.pos = 0
        self.site = site

    # -- token helpers ------------------------------------------------------------------------
    def peek(self, offset: int = 0) -> _Tok:
        return self.tokens[min(self.pos + offset, len(self.tokens) - 1)]

    def is_word(self, *words: str, offset: int = 0) -> bool:
        tok = self.peek(offset)
        return tok.kind == "word" and tok.text.casefold() in words

    def take(self) -> _Tok:
        tok = self.peek()
        self.pos += 1
        return tok

    def expect_op(self, op: str) -> None:
        tok = self.take()
        if tok.kind != "op" or tok.text != op:
            raise self.error(f"Expecting '{op}'", tok)

    def error(self, what: str, tok: _Tok) -> JqlError:
        got = tok.text if tok.kind != "end" else "end of query"
        return JqlError(
            f"Error in the JQL Query: {what} but got '{got}'. (line 1, character {tok.at + 1})"
        )

    # -- grammar ------------------------------------------------------------------------------
    def parse(self) -> tuple[Predicate, list[tuple[str, bool]]]:
        predicate: Predicate = lambda issue: True  # noqa: E731
        if not self.is_word("order"):
            if self.peek().kind == "end":
                return predicate, []
            predicate = self.or_expr()
        order: list[tuple[str, bool]] = []
        if self.is_word("order"):
            self.take()
            if not self.is_word("by"):
                raise self.error("Expecting 'by'", self.peek())
            self.take()
            order = self.order_list()
        if self.peek().kind != "end":
            raise self.error("Expecting either 'OR' or 'AND'", self.peek())
        return predicate, order

    def order_list(self) -> list[tuple[str, bool]]:
        order = []
        while True:
            tok = self.take()
            name = _SORT_ALIASES.get(tok.text.casefold(), tok.text.casefold())
            if tok.kind not in ("word", "string") or name not in SORT_FIELDS:
                raise JqlError(f"Not able to sort using field '{tok.text}'.")
            descending = False
            if self.is_word("asc", "desc"):
                descending = self.take().text.casefold() == "desc"
            order.append((name, descending))
            if not (self.peek().kind == "op" and self.peek().text == ","):
                return order
            self.take()

    def or_expr(self) -> Predicate:
        parts = [self.and_expr()]
        while self.is_word("or"):
            self.take()
            parts.append(self.and_expr())
        return parts[0] if len(parts) == 1 else lambda i: any(p(i) for p in parts)

    def and_expr(self) -> Predicate:
        parts = [self.not_expr()]
        while self.is_word("and"):
            self.take()
            parts.append(self.not_expr())
        return parts[0] if len(parts) == 1 else lambda i: all(p(i) for p in parts)

    def not_expr(self) -> Predicate:
        if self.is_word("not"):
            self.take()
            inner = self.not_expr()
            return lambda i: not inner(i)
        tok = self.peek()
        if tok.kind == "op" and tok.text == "(":
            self.take()
            inner = self.or_expr()
            self.expect_op(")")
            return inner
        return self.clause()

    def clause(self) -> Predicate:
        tok = self.take()
        if tok.kind not in ("word", "string"):
            raise self.error("Expecting a field name", tok)
        name = tok.text.casefold()
        operator = self.operator()
        if operator in ("in", "not in"):
            values = self.value_list()
        elif operator in ("is", "is not"):
            if not self.is_word("empty", "null"):
                raise self.error("Expecting 'EMPTY' or 'NULL'", self.peek())
            self.take()
            values = []
        else:
            values = [self.value()]
        return _clause(self.site, name, tok.text, operator, values)

    def operator(self) -> str:
        tok = self.take()
        if tok.kind == "op" and tok.text not in ("(", ")", ","):
            return tok.text
        if tok.kind == "word" and tok.text.casefold() in ("in", "is"):
            word = tok.text.casefold()
            if self.is_word("not"):
                self.take()
                return f"{word} not" if word == "is" else "not in"
            return word
        if tok.kind == "word" and tok.text.casefold() == "not" and self.is_word("in"):
            self.take()
            return "not in"
        raise self.error("Expecting operator", tok)

    def value(self) -> str:
        tok = self.take()
        if tok.kind not in ("word", "string") or (
            tok.kind == "word" and tok.text.casefold() in ("and", "or", "order", "not")
        ):
            raise self.error("Expecting either a value, list or function", tok)
        return tok.text

    def value_list(self) -> list[str]:
        self.expect_op("(")
        values = [self.value()]
        while True:
            tok = self.take()
            if tok.kind == "op" and tok.text == ")":
                return values
            if tok.kind != "op" or tok.text != ",":
                raise self.error("Expecting ',' or ')'", tok)
            values.append(self.value())


def _clause(site: JqlSite, name: str, shown: str, operator: str, values: list[str]) -> Predicate:
    """A predicate for `field operator values`."""
    if name in ("updated", "updateddate", "created", "createddate", "resolved", "resolutiondate"):
        return _date_clause(site, name, shown, operator, values)
    getter = _getter(site, name, shown, values)
    wanted = {v.casefold() for v in values}
    if operator in ("=", "in"):
        return lambda i: (getter(i) or "").casefold() in wanted
    if operator in ("!=", "not in"):
        # JQL's != never matches an empty field
        return lambda i: (getter(i) or "") != "" and (getter(i) or "").casefold() not in wanted
    if operator == "is":
        return lambda i: not getter(i)
    if operator == "is not":
        return lambda i: bool(getter(i))
    if operator in ("~", "!~") and name in ("summary", "text", "description"):
        needle = values[0].casefold().strip("*")
        found: Predicate = lambda i: needle in (getter(i) or "").casefold()  # noqa: E731
        return found if operator == "~" else (lambda i: not found(i))
    raise JqlError(f"The operator '{operator}' is not supported by the '{shown}' field.")


def _getter(
    site: JqlSite, name: str, shown: str, values: list[str]
) -> Callable[[JqlIssue], str | None]:
    if name == "project":
        keys = [site.project_of(v) for v in values]
        values[:] = keys  # compare on keys from now on
        return lambda i: i.project
    if name in ("key", "issuekey", "issue", "id"):
        exists = getattr(site, "issue_key_exists", None)  # a site that checks keys, as Jira
        for v in values:
            if exists is not None and not v.isdigit() and not exists(v):
                raise JqlError(f"An issue with key '{v}' does not exist for field '{shown}'.")
        return lambda i: i.key if not values or not values[0].isdigit() else i.id
    if name == "status":
        known = {s.casefold() for s in site.statuses}
        for v in values:
            if v.casefold() not in known:
                raise JqlError(f"The value '{v}' does not exist for the field 'status'.")
        return lambda i: i.status
    if name == "statuscategory":
        return lambda i: site.status_category_name(i.status)
    if name == "resolution":
        return lambda i: i.resolution or "Unresolved"
    if name == "priority":
        return lambda i: i.priority
    if name in ("type", "issuetype"):
        return lambda i: i.issuetype
    if name in ("summary", "text"):
        return lambda i: i.summary
    if name == "description":
        return lambda i: i.description
    if name == "labels":
        return lambda i: " ".join(i.labels) or None
    raise JqlError(f"Field '{shown}' does not exist or you do not have permission to view it.")


def _date_clause(
    site: JqlSite, name: str, shown: str, operator: str, values: list[str]
) -> Predicate:
    attr = {"updateddate": "updated", "createddate": "created", "resolved": "resolutiondate"}
    attr_name = attr.get(name, name)
    if operator in ("is", "is not"):
        empty = operator == "is"
        return lambda i: (getattr(i, attr_name) is None) == empty
    if operator not in ("=", "!=", ">", ">=", "<", "<="):
        raise JqlError(f"The operator '{operator}' is not supported by the '{shown}' field.")
    at = _date_value(site, shown, values[0])
    compare: dict[str, Callable[[datetime], bool]] = {
        ">=": lambda t: t >= at,
        ">": lambda t: t > at,
        "<=": lambda t: t <= at,
        "<": lambda t: t < at,
        "=": lambda t: at <= t < at + timedelta(minutes=1),
        "!=": lambda t: not at <= t < at + timedelta(minutes=1),
    }
    test = compare[operator]

    def predicate(issue: JqlIssue) -> bool:
        value = getattr(issue, attr_name)
        return value is not None and test(value)

    return predicate


def _date_value(site: JqlSite, shown: str, literal: str) -> datetime:
    """A JQL date literal as an instant: absolute ones read in the user's time zone (fold 0),
    relative ones (`-15m`, `-2d`) from the site's clock, both at minute granularity."""
    text = literal.strip()
    relative = _RELATIVE.fullmatch(text)
    if relative:
        sign, amount, unit = relative.groups()
        delta = _UNIT[unit] * int(amount)
        at = site.now() + (-delta if sign == "-" else delta)
        return at.replace(second=0, microsecond=0)
    for fmt in _DATE_FORMATS:
        try:
            naive = datetime.strptime(text, fmt)
        except ValueError:
            continue
        return naive.replace(tzinfo=site.zone()).astimezone(UTC)
    raise JqlError(
        f"Date value '{literal}' for field '{shown}' is invalid. Valid formats include: "
        "'yyyy/MM/dd HH:mm', 'yyyy-MM-dd HH:mm', 'yyyy/MM/dd', 'yyyy-MM-dd', or a period format "
        "e.g. '-5d', '4w 2d'."
    )

"""WIQL, the subset the Azure DevOps sandbox answers: flat work-item queries, parsed and evaluated
for real on the stored fields of each work item.

    SELECT [field], ... FROM WorkItems [WHERE condition] [ORDER BY [field] [ASC|DESC], ...]

Fields are named by reference name (`[System.State]`) or friendly name (`[State]`), without case.
Conditions: `=`, `<>`, `>`, `>=`, `<`, `<=`, `[NOT] IN (...)`, `[NOT] UNDER` (area and iteration
paths), joined by AND / OR / NOT and parentheses. Literals: 'strings' ('' escapes a quote), numbers,
`@project` (the project of the request URL) and `@today`. An identity field (`System.AssignedTo`,
...; stored as `{"displayName", "uniqueName"}` or as the older "Name <unique name>" text) equals a
literal that is its display name, its unique name or "Name <unique name>"; it orders by display
name. String comparisons ignore case; without
`timePrecision` dates compare by day and a literal with a time is refused (VS402625), with it they
compare to the instant (a naive literal is UTC). Every refusal is a `WiqlError` carrying the
server's message (TF51005 an unknown field, TF51006 a syntax error, ...); the sandbox answers it
with HTTP 400.

    query = parse("SELECT [System.Id] FROM WorkItems WHERE [System.State] = 'Active'")
    matched = query.filter(rows)  # rows: each work item's fields, reference name -> value
    query.sort(matched)
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any


class WiqlError(ValueError):
    """A query the sandbox (like the server) refuses: becomes HTTP 400."""


# The fields of the sandbox organization by type: the type decides how a literal is read and how
# values compare.
DATE_FIELDS = frozenset(
    {
        "System.ChangedDate",
        "System.CreatedDate",
        "System.AuthorizedDate",
        "System.RevisedDate",
        "Microsoft.VSTS.Common.StateChangeDate",
        "Microsoft.VSTS.Common.ActivatedDate",
        "Microsoft.VSTS.Common.ResolvedDate",
        "Microsoft.VSTS.Common.ClosedDate",
    }
)
INT_FIELDS = frozenset(
    {
        "System.Id",
        "System.Rev",
        "System.Parent",
        "System.IterationId",
        "Microsoft.VSTS.Common.Priority",
    }
)
NUMBER_FIELDS = frozenset(
    {
        "Microsoft.VSTS.Scheduling.StoryPoints",
        "Microsoft.VSTS.Scheduling.Effort",
        "Microsoft.VSTS.Scheduling.Size",
        "Microsoft.VSTS.Scheduling.RemainingWork",
    }
)
STRING_FIELDS = frozenset(
    {
        "System.TeamProject",
        "System.AreaPath",
        "System.IterationPath",
        "System.WorkItemType",
        "System.State",
        "System.Reason",
        "System.Title",
        "System.Description",
        "System.Tags",
        "Microsoft.VSTS.Common.AcceptanceCriteria",
        "Microsoft.VSTS.CMMI.Blocked",
        "Microsoft.VSTS.Common.ValueArea",
        "Microsoft.VSTS.Common.Severity",
    }
)
#: Identity fields: the service answers them as IdentityRef objects (`isIdentity` in the fields
#: list of the published spec's examples, wit 7.1 `fields/GET__wit_fields.json`).
IDENTITY_FIELDS = frozenset({"System.AssignedTo", "System.CreatedBy", "System.ChangedBy"})
#: Every field reference name the sandbox organization defines.
KNOWN_FIELDS = DATE_FIELDS | INT_FIELDS | NUMBER_FIELDS | STRING_FIELDS | IDENTITY_FIELDS
#: Reference name -> friendly name (`WorkItemFieldReference.name` in WIQL answers; a query may use
#: either). From the published spec's field list example (wit 7.1 `fields/GET__wit_fields.json`)
#: where it has them; Story Points, Size, Resolved Date and Value Area as the process templates
#: name them.
FIELD_NAMES: dict[str, str] = {
    "System.Id": "ID",
    "System.Rev": "Rev",
    "System.Parent": "Parent",
    "System.Title": "Title",
    "System.State": "State",
    "System.Reason": "Reason",
    "System.TeamProject": "Team Project",
    "System.AreaPath": "Area Path",
    "System.IterationPath": "Iteration Path",
    "System.IterationId": "Iteration ID",
    "System.WorkItemType": "Work Item Type",
    "System.Description": "Description",
    "System.Tags": "Tags",
    "System.AssignedTo": "Assigned To",
    "System.CreatedBy": "Created By",
    "System.ChangedBy": "Changed By",
    "System.CreatedDate": "Created Date",
    "System.ChangedDate": "Changed Date",
    "System.AuthorizedDate": "Authorized Date",
    "System.RevisedDate": "Revised Date",
    "Microsoft.VSTS.Common.StateChangeDate": "State Change Date",
    "Microsoft.VSTS.Common.ActivatedDate": "Activated Date",
    "Microsoft.VSTS.Common.ResolvedDate": "Resolved Date",
    "Microsoft.VSTS.Common.ClosedDate": "Closed Date",
    "Microsoft.VSTS.Common.Priority": "Priority",
    "Microsoft.VSTS.Common.AcceptanceCriteria": "Acceptance Criteria",
    "Microsoft.VSTS.Common.ValueArea": "Value Area",
    "Microsoft.VSTS.Common.Severity": "Severity",
    "Microsoft.VSTS.Scheduling.StoryPoints": "Story Points",
    "Microsoft.VSTS.Scheduling.Effort": "Effort",
    "Microsoft.VSTS.Scheduling.Size": "Size",
    "Microsoft.VSTS.Scheduling.RemainingWork": "Remaining Work",
    "Microsoft.VSTS.CMMI.Blocked": "Blocked",
}
_BY_NAME = {
    **{name.casefold(): ref for ref, name in FIELD_NAMES.items()},
    **{ref.casefold(): ref for ref in KNOWN_FIELDS},
}


def field_reference(name: str) -> str | None:
    """The reference name of a field named by reference or friendly name (any case); None when
    the organization has no such field."""
    return _BY_NAME.get(name.strip().casefold())


def identity_names(value: Any) -> frozenset[str]:
    """The (case-folded) texts an identity field's value equals in WIQL: its display name, its
    unique name and "Name <unique name>"."""
    if isinstance(value, Mapping):
        display = str(value.get("displayName") or "")
        unique = str(value.get("uniqueName") or "")
        names = {display, unique, f"{display} <{unique}>"} if unique else {display}
    elif isinstance(value, str):
        names = {value}
        match = re.fullmatch(r"\s*(.*?)\s*<([^<>]*)>\s*", value)
        if match:
            names |= {match.group(1), match.group(2)}
    else:
        return frozenset()
    return frozenset(n.casefold() for n in names if n)


def identity_display(value: Any) -> str | None:
    """An identity field's display name (the object's `displayName`, or the name before the
    `<unique name>` of the older text form)."""
    if isinstance(value, Mapping):
        display = value.get("displayName")
        return str(display) if display is not None else None
    if isinstance(value, str):
        return value.split("<", 1)[0].strip() if "<" in value else value
    return None


# ---------------------------------------------------------------------------------------------
_TOKEN = re.compile(
    r"""\s*(?:
        (?P<field>\[[^\]]*\])
      | (?P<string>'(?:[^']|'')*')
      | (?P<macro>@\w+)
      | (?P<number>-?\d+(?:\.\d+)?)
      | (?P<op><>|>=|<=|=|<|>|\(|\)|,)
      | (?P<word>[A-Za-z_][\w.]*)
    )""",
    re.VERBOSE,
)

Predicate = Callable[[Mapping[str, Any]], bool]


@dataclass(frozen=True, slots=True)
class Token:
    kind: str
    text: str


@dataclass(slots=True)
class ParsedQuery:
    """A parsed WIQL flat query: `where` filters a fields dict, `order` is (field, descending)."""

    fields: list[str]
    where: Predicate
    order: list[tuple[str, bool]]

    def filter(self, rows: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
        """The rows (fields of work items) the WHERE clause keeps, in their order."""
        return [row for row in rows if self.where(row)]

    def sort(self, rows: list[Mapping[str, Any]]) -> None:
        """Sort rows in place by the ORDER BY (stable: without one, the order stays)."""
        for name, descending in reversed(self.order):
            rows.sort(key=_sorter(name), reverse=descending)


def tokenize(query: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    query = query.rstrip()
    while pos < len(query):
        match = _TOKEN.match(query, pos)
        if match is None or match.end() == pos:
            raise WiqlError(
                f"TF51006: Unexpected text at position {pos}: «{query[pos : pos + 20]}»"
            )
        kind = match.lastgroup or ""
        tokens.append(Token(kind, match.group(kind)))
        pos = match.end()
    return tokens


class WiqlParser:
    """Recursive descent over the tokens. Comparisons are compiled into closures (fast enough to
    filter tens of thousands of items per query)."""

    def __init__(
        self,
        query: str,
        *,
        project: str | None,
        time_precision: bool,
        area_exists: Callable[[str], bool],
    ) -> None:
        self.tokens = tokenize(query)
        self.pos = 0
        self.project = project
        self.time_precision = time_precision
        self.area_exists = area_exists

    # -- token plumbing -------------------------------------------------------------------
    def peek(self) -> Token | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> Token:
        token = self.peek()
        if token is None:
            raise WiqlError("TF51006: The query statement ended unexpectedly.")
        self.pos += 1
        return token

    def at_word(self, *words: str) -> bool:
        token = self.peek()
        return token is not None and token.kind == "word" and token.text.upper() in words

    def expect_word(self, word: str) -> None:
        token = self.take()
        if token.kind != "word" or token.text.upper() != word:
            raise WiqlError(f"TF51006: Expecting {word}. The error is caused by «{token.text}».")

    def expect_op(self, op: str) -> None:
        token = self.take()
        if token.kind != "op" or token.text != op:
            raise WiqlError(f"TF51006: Expecting '{op}'. The error is caused by «{token.text}».")

    def field(self) -> str:
        token = self.take()
        if token.kind != "field":
            raise WiqlError(
                f"TF51006: Expecting field name. The error is caused by «{token.text}»."
            )
        name = token.text[1:-1].strip()
        reference = field_reference(name)
        if reference is None:
            raise WiqlError(
                f"TF51005: The query references a field that does not exist. "
                f"The error is caused by «{name}»."
            )
        return reference

    # -- grammar --------------------------------------------------------------------------
    def parse(self) -> ParsedQuery:
        self.expect_word("SELECT")
        fields = [self.field()]
        while self.peek() == Token("op", ","):
            self.take()
            fields.append(self.field())
        self.expect_word("FROM")
        source = self.take()
        if source.kind != "word" or source.text.casefold() != "workitems":
            raise WiqlError(
                f"TF51006: Expecting WorkItems. The error is caused by «{source.text}»."
            )
        where: Predicate = lambda f: True  # noqa: E731
        if self.at_word("WHERE"):
            self.take()
            where = self.expr()
        order: list[tuple[str, bool]] = []
        if self.at_word("ORDER"):
            self.take()
            self.expect_word("BY")
            order.append(self.order_item())
            while self.peek() == Token("op", ","):
                self.take()
                order.append(self.order_item())
        if self.peek() is not None:
            raise WiqlError(
                f"TF51006: Unexpected text. The error is caused by «{self.take().text}»."
            )
        return ParsedQuery(fields, where, order)

    def order_item(self) -> tuple[str, bool]:
        name = self.field()
        descending = False
        if self.at_word("ASC", "DESC"):
            descending = self.take().text.upper() == "DESC"
        return name, descending

    def expr(self) -> Predicate:
        parts = [self.term()]
        while self.at_word("OR"):
            self.take()
            parts.append(self.term())
        if len(parts) == 1:
            return parts[0]
        return lambda f: any(p(f) for p in parts)

    def term(self) -> Predicate:
        parts = [self.factor()]
        while self.at_word("AND"):
            self.take()
            parts.append(self.factor())
        if len(parts) == 1:
            return parts[0]
        return lambda f: all(p(f) for p in parts)

    def factor(self) -> Predicate:
        if self.at_word("NOT"):
            self.take()
            inner = self.factor()
            return lambda f: not inner(f)
        if self.peek() == Token("op", "("):
            self.take()
            inner = self.expr()
            self.expect_op(")")
            return inner
        return self.comparison()

    def comparison(self) -> Predicate:
        name = self.field()
        negate = False
        if self.at_word("NOT"):
            self.take()
            negate = True
        if self.at_word("IN"):
            self.take()
            self.expect_op("(")
            values = [self.value(name)]
            while self.peek() == Token("op", ","):
                self.take()
                values.append(self.value(name))
            self.expect_op(")")
            wanted = set(values)
            if name in IDENTITY_FIELDS:
                return lambda f: bool(identity_names(f.get(name)) & wanted) != negate
            return lambda f: (self.key(name, f.get(name)) in wanted) != negate
        if self.at_word("UNDER"):
            self.take()
            path = self.value(name)
            if not isinstance(path, str) or name not in ("System.AreaPath", "System.IterationPath"):
                raise WiqlError(
                    f"TF51006: UNDER needs a path field. The error is caused by «{name}»."
                )
            if name == "System.AreaPath" and not self.area_exists(path):
                raise WiqlError(
                    "TF51011: The specified area path does not exist. "
                    f"The error is caused by «{path}»."
                )
            prefix = path + "\\"

            def under(f: Mapping[str, Any]) -> bool:
                have = self.key(name, f.get(name))
                return isinstance(have, str) and (have == path or have.startswith(prefix))

            return (lambda f: not under(f)) if negate else under
        if negate:
            raise WiqlError("TF51006: Expecting IN or UNDER after NOT.")
        op = self.take()
        if op.kind != "op" or op.text not in ("=", "<>", ">", ">=", "<", "<="):
            raise WiqlError(f"TF51006: Expecting an operator. The error is caused by «{op.text}».")
        rhs = self.value(name)
        return self.compare(name, op.text, rhs)

    def compare(self, name: str, op: str, rhs: Any) -> Predicate:
        key = self.key
        if name in IDENTITY_FIELDS and op in ("=", "<>"):
            return lambda f: (rhs in identity_names(f.get(name))) == (op == "=")
        if op == "=":
            return lambda f: key(name, f.get(name)) == rhs
        if op == "<>":
            return lambda f: key(name, f.get(name)) != rhs

        def ordered(f: Mapping[str, Any]) -> bool:
            have = key(name, f.get(name))
            if have is None:
                return False
            if op == ">":
                return bool(have > rhs)
            if op == ">=":
                return bool(have >= rhs)
            if op == "<":
                return bool(have < rhs)
            return bool(have <= rhs)

        return ordered

    def value(self, name: str) -> Any:
        """A literal, converted to the comparison key of field `name`."""
        token = self.take()
        if token.kind == "macro":
            if token.text.casefold() == "@project":
                if self.project is None:
                    raise WiqlError("TF51011: @project needs a project in the request URL.")
                return self.project.casefold()
            if token.text.casefold() == "@today":
                return datetime.now(UTC).date()
            raise WiqlError(f"TF51006: Unknown macro. The error is caused by «{token.text}».")
        if token.kind == "string":
            text = token.text[1:-1].replace("''", "'")
            if name in DATE_FIELDS:
                return self.date_literal(text)
            if name in INT_FIELDS or name in NUMBER_FIELDS:
                try:
                    return float(text)
                except ValueError:
                    raise WiqlError(f"TF51006: «{text}» is not a number.") from None
            return text.casefold()
        if token.kind == "number":
            if name in DATE_FIELDS or name in STRING_FIELDS or name in IDENTITY_FIELDS:
                raise WiqlError(f"TF51006: A number cannot be compared with «{name}».")
            return float(token.text)
        raise WiqlError(f"TF51006: Expecting a value. The error is caused by «{token.text}».")

    def date_literal(self, text: str) -> datetime | date:
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise WiqlError(f"TF51006: «{text}» is not a valid date.") from None
        has_time = "T" in text or " " in text.strip()
        if not self.time_precision:
            if has_time:
                raise WiqlError(
                    "VS402625: Dates must be entered without a time unless timePrecision is set. "
                    f"The error is caused by «{text}»."
                )
            return parsed.date()
        return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)

    def key(self, name: str, raw: Any) -> Any:
        """The comparison form of a stored value: strings case-folded, dates by day without time
        precision, numbers as float."""
        if raw is None:
            return None
        if name in DATE_FIELDS:
            assert isinstance(raw, datetime)
            return raw if self.time_precision else raw.date()
        if name in INT_FIELDS or name in NUMBER_FIELDS:
            return float(raw)
        if name in IDENTITY_FIELDS:
            display = identity_display(raw)
            return display.casefold() if display is not None else None
        return str(raw).casefold()


def _sorter(name: str) -> Callable[[Mapping[str, Any]], tuple[int, Any]]:
    """ORDER BY key of one field: None sorts first; strings without case; identities by display
    name."""

    def key(fields: Mapping[str, Any]) -> tuple[int, Any]:
        value = fields.get(name)
        if name in IDENTITY_FIELDS:
            value = identity_display(value)
        if value is None:
            return (0, 0)
        if isinstance(value, str):
            return (1, value.casefold())
        return (1, value)

    return key


def parse(
    query: str,
    *,
    project: str | None = None,
    time_precision: bool = False,
    area_exists: Callable[[str], bool] | None = None,
) -> ParsedQuery:
    """Parse a WIQL query. `project` answers `@project`; `time_precision` is the request's
    `timePrecision`; `area_exists` says whether an area path exists (None: every one does)."""
    return WiqlParser(
        query,
        project=project,
        time_precision=time_precision,
        area_exists=area_exists or (lambda path: True),
    ).parse()

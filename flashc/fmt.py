"""`flashc fmt`: one canonical layout for .flash files, comments kept.

The grammar ignores comments, so the formatter works on tokens, not on the
AST: Lark's lexer is run with ``dont_ignore`` so comments come back as tokens,
each physical line is re-rendered, and nothing but whitespace changes (this is
checked on every run: the formatted text must lex to the same tokens and parse).

The layout:
  - spacing inside a line is canonical: one space around binary operators and
    `=`, after `,` and `:`, none inside brackets, before `(` of a call or `[`
    of a type, around `.`, or after a unary `-`;
  - indentation is two spaces per `{`; a line that continues a statement
    (starting with an operator such as `|>`, or after a line ending in one) is
    indented two more; a line inside an open `(` or `[` four more than the
    line that opened it; a closing bracket lines up with its opening line;
  - line breaks stay where they were written (a statement per line, long calls
    broken where the author broke them); runs of blank lines become one, and
    none is kept just inside `{ ... }`;
  - in a `train` section the values line up in one column after the keywords
    (at least as far as after `early_stop`);
  - trailing comments of consecutive lines line up two spaces after the
    longest code among them; comment text is kept as written.
"""

from __future__ import annotations

import difflib
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from lark import Token
from lark.exceptions import UnexpectedInput

from flashc.diagnostics import FlashError, Span, error
from flashc.syntax import parse
from flashc.syntax.grammar import flash_parser

OPENERS = {"(": ")", "[": "]", "{": "}"}
CLOSERS = {v: k for k, v in OPENERS.items()}
BINARY = {"|>", "+", "-", "*", "/", "//", "**", "%", "@", "==", "!=", "<", ">", "<=", ">=", "and", "or"}
NO_SPACE_BEFORE = {",", ")", "]", ".", ":"}
NO_SPACE_AFTER = {"(", "[", "."}
TRAIN_KEYWORD = "train"
TRAIN_COLUMN = len("early_stop")  # the longest usual keyword: the values of most sections line up alike


def _is_keyword(tok: Token) -> bool:
    """Anonymous terminals whose text is a word: `model`, `return`, `on`, ..."""
    return tok.type != "NAME" and str(tok).isidentifier()


def _unary_context(prev: Token | None) -> bool:
    """A `-` after these is a sign, not a subtraction."""
    return prev is None or str(prev) in BINARY | {"(", "[", "{", ",", "=", ":"} or _is_keyword(prev)


def _space(prev2: Token | None, a: Token, b: Token) -> bool:
    """Whether one space separates tokens ``a`` and ``b`` on a line (``prev2`` precedes ``a``)."""
    av, bv = str(a), str(b)
    if bv in NO_SPACE_BEFORE or av in NO_SPACE_AFTER:
        return False
    if bv in ("(", "["):
        return not (a.type == "NAME" or av in (")", "]"))
    if av == "-" and _unary_context(prev2):
        return False
    return True


@dataclass
class _Line:
    """One physical line of the output before alignment."""

    indent: int
    code: list[Token]
    comment: str | None
    train_block: int | None = None  # the train section this line is a statement of
    text: str = ""
    blank_before: bool = False


@dataclass
class _Open:
    char: str
    indent: int  # the indent of the line the bracket was opened on
    train_block: int | None = None


@dataclass
class _Layout:
    lines: list[_Line] = field(default_factory=list)
    stack: list[_Open] = field(default_factory=list)
    statement_indent: int = 0
    last_code: Token | None = None  # the last code token of the previous line
    train_blocks: int = 0

    def base(self) -> int:
        """Indent of a statement at the current depth."""
        return self.stack[-1].indent + 2 if self.stack else 0

    def inside_brackets(self) -> bool:
        return bool(self.stack) and self.stack[-1].char != "{"

    def continues(self, first: Token) -> bool:
        """Whether a line starting with ``first`` continues the statement before it."""
        if str(first) in BINARY:
            return True
        last = self.last_code
        return last is not None and (str(last) in BINARY or str(last) in ("=", ",", ":"))

    def add(self, code: list[Token], comment: str | None, blank_before: bool) -> None:
        if not code:
            indent = self.stack[-1].indent + 4 if self.inside_brackets() else self.base()
            self.lines.append(_Line(indent, [], comment, blank_before=blank_before))
            return
        first = code[0]
        train_block = None
        if str(first) in CLOSERS:
            indent = self.stack[-1].indent if self.stack else 0
        elif self.inside_brackets():
            indent = self.stack[-1].indent + 4
        elif self.continues(first):
            indent = self.statement_indent + 2
        else:
            indent = self.statement_indent = self.base()
            if self.stack and self.stack[-1].train_block is not None and len(code) > 1:
                train_block = self.stack[-1].train_block
        after_item = self.last_code is not None and str(self.last_code) == "}" and indent == 0 and not self.stack
        for tok in code:
            value = str(tok)
            if value in OPENERS:
                block = None
                if value == "{" and str(code[0]) == TRAIN_KEYWORD:
                    self.train_blocks += 1
                    block = self.train_blocks
                # a `{` opened on a continuation line still indents from its statement
                self.stack.append(_Open(value, self.statement_indent if value == "{" else indent, block))
            elif value in CLOSERS and self.stack:
                self.stack.pop()
        self.last_code = code[-1]
        # top-level items (model, train) are separated by one blank line
        blank_before = blank_before or (after_item and str(first) not in CLOSERS)
        self.lines.append(_Line(indent, code, comment, train_block, blank_before=blank_before))


def _physical_lines(text: str, file: str) -> list[tuple[int, list[Token], str | None]]:
    """(line number, code tokens, trailing comment) for every line that has tokens."""
    try:
        tokens = list(flash_parser().lex(text, dont_ignore=True))
    except UnexpectedInput as exc:
        raise error(Span(file, exc.line, exc.column, exc.line, exc.column + 1), "cannot read this character") from None
    by_line: dict[int, list[Token]] = {}
    for tok in tokens:
        if tok.type != "WS":
            by_line.setdefault(tok.line, []).append(tok)
    out = []
    for number, toks in sorted(by_line.items()):
        comment = str(toks[-1]).rstrip() if toks[-1].type == "COMMENT" else None
        out.append((number, toks[:-1] if comment is not None else toks, comment))
    return out


def _render_code(code: list[Token], before: Token | None) -> str:
    parts: list[str] = []
    prev2 = before
    for i, tok in enumerate(code):
        if i:
            if _space(prev2, code[i - 1], tok):
                parts.append(" ")
            prev2 = code[i - 1]
        parts.append(str(tok))
    return "".join(parts)


def format_source(text: str, file: str = "<input>") -> str:
    """The canonical layout of ``text``; a spec with a syntax error raises FlashError."""
    parse(text, file)
    layout = _Layout()
    previous_line = 0
    previous_code: Token | None = None
    for number, code, comment in _physical_lines(text, file):
        blank = number > previous_line + 1 and previous_line > 0
        layout.add(code, comment, blank)
        line = layout.lines[-1]
        line.text = _render_code(code, previous_code)
        if code:
            previous_code = code[-1]
        previous_line = number
    return _assemble(layout.lines)


def _assemble(lines: list[_Line]) -> str:
    widths: dict[int, int] = {}
    for line in lines:
        if line.train_block is not None:
            widths[line.train_block] = max(widths.get(line.train_block, TRAIN_COLUMN), len(str(line.code[0])))
    for line in lines:
        if line.train_block is not None:
            keyword = str(line.code[0])
            rest = line.text[len(keyword):].lstrip(" ")
            line.text = keyword.ljust(widths[line.train_block] + 1) + rest
    codes = [" " * line.indent + line.text if line.code else "" for line in lines]
    comment_at = _comment_columns(lines, codes)
    out: list[str] = []
    for i, (line, code) in enumerate(zip(lines, codes)):
        opens_block = i > 0 and lines[i - 1].code and str(lines[i - 1].code[-1]) == "{"
        closes_block = line.code and str(line.code[0]) == "}"
        if line.blank_before and out and not opens_block and not closes_block:
            out.append("")
        if not line.code:
            out.append(" " * line.indent + (line.comment or ""))
        elif line.comment is not None:
            out.append(code.ljust(comment_at[i]) + line.comment)
        else:
            out.append(code)
    return "\n".join(out) + "\n" if out else ""


def _comment_columns(lines: list[_Line], codes: list[str]) -> dict[int, int]:
    """Trailing comments of consecutive code lines share a column: two past the longest code."""
    columns: dict[int, int] = {}
    run: list[int] = []

    def close() -> None:
        if run:
            column = max(len(codes[i]) for i in run) + 2
            columns.update({i: column for i in run})
            run.clear()

    for i, line in enumerate(lines):
        if line.code and line.comment is not None and not line.blank_before:
            run.append(i)
        elif line.code and line.comment is not None:
            close()
            run.append(i)
        else:
            close()
    close()
    return columns


def check_same_tokens(before: str, after: str, file: str) -> None:
    """The formatter changes whitespace only: a difference in tokens is a bug, reported as such."""
    def significant(text: str) -> list[tuple[str, str]]:
        return [(t.type, str(t).rstrip()) for t in flash_parser().lex(text, dont_ignore=True) if t.type != "WS"]

    if significant(before) != significant(after):
        raise error(Span(file, 1, 1, 1, 1), "flashc fmt would change more than whitespace here (a bug in fmt)",
                    "please report it with this file; the file was left as it is")


def format_checked(text: str, file: str = "<input>") -> str:
    """``format_source`` plus the proof that only whitespace changed and the result still parses."""
    out = format_source(text, file)
    check_same_tokens(text, out, file)
    parse(out, file)
    return out


def diff(before: str, after: str, path: str) -> str:
    return "".join(difflib.unified_diff(before.splitlines(True), after.splitlines(True), f"{path}", f"{path} (formatted)"))


def format_file(path: str | Path, check: bool) -> str | None:
    """Format one file in place, or with ``check`` leave it; the unified diff when it changes, else None."""
    path = Path(path)
    try:
        before = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise error(Span.unknown(str(path)), f"cannot read {path}: {exc}") from None
    after = format_checked(before, str(path))
    if after == before:
        return None
    if not check:
        try:
            tmp = path.with_name(f".{path.name}.fmt.tmp")
            tmp.write_text(after, encoding="utf-8")
            os.replace(tmp, path)
        except OSError as exc:
            raise error(Span.unknown(str(path)), f"cannot write {path}: {exc}") from None
    return diff(before, after, str(path))


def format_files(paths: list[str], check: bool) -> int:
    """`flashc fmt [--check] FILE...`: 0 when nothing needs (or needed) formatting; with ``check``,
    1 and a unified diff on stdout for each file that would change. Errors in any file are
    reported together after the others were formatted."""
    changed = 0
    diagnostics = []
    for path in paths:
        try:
            patch = format_file(path, check)
        except FlashError as exc:
            diagnostics.extend(exc.diagnostics)
            continue
        if patch is None:
            continue
        changed += 1
        if check:
            sys.stdout.write(patch)
        else:
            print(f"reformatted {path}", file=sys.stderr)
    if diagnostics:
        raise FlashError(diagnostics)
    if check and changed:
        print(f"{changed} file(s) would be reformatted", file=sys.stderr)
        return 1
    return 0

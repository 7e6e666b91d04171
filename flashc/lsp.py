"""`flashc lsp`: the language server (stdio), on pygls.

A thin translation layer: every answer comes from :mod:`flashc.editor`; this
module converts positions (LSP counts lines and characters from 0, flashc from
1) and result types. A document is analysed when it is opened, changed or
saved; its diagnostics are the messages `flashc check` prints, as ranges.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from urllib.parse import unquote, urlparse

from lsprotocol import types as lsp
from pygls.lsp.server import LanguageServer

import flashc
from flashc.diagnostics import Span
from flashc.editor import Analysis, Symbol, analyze, completions, definition, hover, located, symbols

SYMBOL_KINDS = {
    "model": lsp.SymbolKind.Class, "block": lsp.SymbolKind.Function, "layer": lsp.SymbolKind.Variable,
    "input": lsp.SymbolKind.Field, "output": lsp.SymbolKind.Field, "train": lsp.SymbolKind.Module,
}
COMPLETION_KINDS = {
    "op": lsp.CompletionItemKind.Function, "argument": lsp.CompletionItemKind.Property,
    "block": lsp.CompletionItemKind.Class, "keyword": lsp.CompletionItemKind.Keyword,
    "name": lsp.CompletionItemKind.Variable,
}


def uri_to_path(uri: str) -> str:
    parsed = urlparse(uri)
    return unquote(parsed.path) if parsed.scheme == "file" else uri


def to_range(span: Span) -> lsp.Range:
    start = lsp.Position(max(span.line - 1, 0), max(span.col - 1, 0))
    end_line, end_col = (span.end_line, span.end_col) if (span.end_line, span.end_col) > (span.line, span.col) \
        else (span.line, span.col + 1)
    return lsp.Range(start, lsp.Position(max(end_line - 1, 0), max(end_col - 1, 0)))


class FlashServer(LanguageServer):
    """Keeps the latest analysis of each open document, and the last one that built."""

    def __init__(self) -> None:
        super().__init__("flashc", flashc.__version__, text_document_sync_kind=lsp.TextDocumentSyncKind.Full)
        self.latest: dict[str, Analysis] = {}
        self.built: dict[str, Analysis] = {}

    def refresh(self, uri: str) -> None:
        document = self.workspace.get_text_document(uri)
        path = uri_to_path(uri)
        analysis = analyze(document.source, path)
        self.latest[uri] = analysis
        if analysis.graph is not None:
            self.built[uri] = analysis
        diagnostics = []
        for d in analysis.diagnostics:
            span, message = located(d, path)
            severity = lsp.DiagnosticSeverity.Warning if d.severity == "warning" else lsp.DiagnosticSeverity.Error
            diagnostics.append(lsp.Diagnostic(to_range(span), message, severity=severity, source="flashc"))
        self.text_document_publish_diagnostics(lsp.PublishDiagnosticsParams(uri=uri, diagnostics=diagnostics))

    def for_lookup(self, uri: str) -> Analysis | None:
        """The analysis to answer from: the current text if it built, else the last version that did."""
        latest = self.latest.get(uri)
        if latest is not None and (latest.graph is not None or uri not in self.built):
            return latest
        fallback = self.built.get(uri)
        if fallback is not None and latest is not None and latest.module is not None:
            return Analysis(latest.text, latest.path, latest.module, fallback.graph, latest.diagnostics)
        return fallback or latest


server = FlashServer()


@server.feature(lsp.TEXT_DOCUMENT_DID_OPEN)
def did_open(ls: FlashServer, params: lsp.DidOpenTextDocumentParams) -> None:
    ls.refresh(params.text_document.uri)


@server.feature(lsp.TEXT_DOCUMENT_DID_CHANGE)
def did_change(ls: FlashServer, params: lsp.DidChangeTextDocumentParams) -> None:
    ls.refresh(params.text_document.uri)


@server.feature(lsp.TEXT_DOCUMENT_DID_SAVE)
def did_save(ls: FlashServer, params: lsp.DidSaveTextDocumentParams) -> None:
    ls.refresh(params.text_document.uri)


@server.feature(lsp.TEXT_DOCUMENT_DID_CLOSE)
def did_close(ls: FlashServer, params: lsp.DidCloseTextDocumentParams) -> None:
    ls.latest.pop(params.text_document.uri, None)
    ls.built.pop(params.text_document.uri, None)


@server.feature(lsp.TEXT_DOCUMENT_HOVER)
def on_hover(ls: FlashServer, params: lsp.HoverParams) -> lsp.Hover | None:
    analysis = ls.for_lookup(params.text_document.uri)
    if analysis is None:
        return None
    text = hover(analysis, params.position.line + 1, params.position.character + 1)
    if text is None:
        return None
    return lsp.Hover(lsp.MarkupContent(lsp.MarkupKind.Markdown, text))


@server.feature(lsp.TEXT_DOCUMENT_DEFINITION)
def on_definition(ls: FlashServer, params: lsp.DefinitionParams) -> lsp.Location | None:
    analysis = ls.for_lookup(params.text_document.uri)
    if analysis is None:
        return None
    span = definition(analysis, params.position.line + 1, params.position.character + 1)
    if span is None:
        return None
    return lsp.Location(Path(span.file).resolve().as_uri(), to_range(span))


@server.feature(lsp.TEXT_DOCUMENT_COMPLETION, lsp.CompletionOptions(trigger_characters=["(", ",", "|"]))
def on_completion(ls: FlashServer, params: lsp.CompletionParams) -> lsp.CompletionList:
    analysis = ls.latest.get(params.text_document.uri)
    if analysis is None:
        return lsp.CompletionList(False, [])
    items = [
        lsp.CompletionItem(c.label, kind=COMPLETION_KINDS[c.kind], detail=c.detail or None,
                           documentation=c.doc or None, insert_text=c.insert or None)
        for c in completions(analysis, params.position.line + 1, params.position.character + 1)
    ]
    return lsp.CompletionList(False, items)


def _symbol(s: Symbol) -> lsp.DocumentSymbol:
    rng = to_range(s.span)
    return lsp.DocumentSymbol(s.name, SYMBOL_KINDS[s.kind], rng, lsp.Range(rng.start, rng.start), detail=s.detail,
                              children=[_symbol(c) for c in s.children])


@server.feature(lsp.TEXT_DOCUMENT_DOCUMENT_SYMBOL)
def on_symbols(ls: FlashServer, params: lsp.DocumentSymbolParams) -> list[lsp.DocumentSymbol]:
    analysis = ls.latest.get(params.text_document.uri)
    return [_symbol(s) for s in symbols(analysis)] if analysis is not None else []


def main() -> int:
    """Serve on stdin/stdout until the client says exit.

    pygls closes the streams it is given when it stops; it gets duplicates, so the
    process's own stdout is still open for the CLI's final flush.
    """
    with os.fdopen(os.dup(sys.stdin.fileno()), "rb") as stdin, os.fdopen(os.dup(sys.stdout.fileno()), "wb") as stdout:
        server.start_io(stdin, stdout)
    return 0

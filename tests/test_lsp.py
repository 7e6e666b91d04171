"""`flashc lsp`, through a real client session: JSON-RPC with Content-Length framing over the
server's stdin/stdout (initialize, didOpen, didChange, hover, definition, completion, symbols,
shutdown, exit)."""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("pygls")

from flashc.editor import analyze, completions, definition, hover  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
GPT2 = ROOT / "specs" / "gpt2.flash"
TIMEOUT = 60


class Client:
    """A minimal LSP client: one request at a time, notifications kept in order."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "flashc.cli", "lsp"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
        self.messages: queue.Queue = queue.Queue()
        self.notes: list[dict] = []
        self.next_id = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        stream = self.proc.stdout
        while True:
            length = None
            while True:
                line = stream.readline()
                if not line:
                    return
                if line in (b"\r\n", b"\n"):
                    break
                key, _, value = line.decode("ascii").partition(":")
                if key.lower() == "content-length":
                    length = int(value)
            self.messages.put(json.loads(stream.read(length)))

    def send(self, message: dict) -> None:
        body = json.dumps({"jsonrpc": "2.0", **message}).encode("utf-8")
        self.proc.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        self.proc.stdin.flush()

    def notify(self, method: str, params: Any) -> None:
        self.send({"method": method, "params": params})

    def request(self, method: str, params: Any) -> Any:
        self.next_id += 1
        self.send({"id": self.next_id, "method": method, "params": params})
        while True:
            msg = self.messages.get(timeout=TIMEOUT)
            if msg.get("id") == self.next_id and "method" not in msg:
                assert "error" not in msg, msg
                return msg.get("result")
            self.notes.append(msg)

    def diagnostics(self, uri: str) -> list[dict]:
        """The next diagnostics published for ``uri``."""
        for k, msg in enumerate(self.notes):
            if msg.get("method") == "textDocument/publishDiagnostics" and msg["params"]["uri"] == uri:
                del self.notes[: k + 1]
                return msg["params"]["diagnostics"]
        while True:
            msg = self.messages.get(timeout=TIMEOUT)
            if msg.get("method") == "textDocument/publishDiagnostics" and msg["params"]["uri"] == uri:
                return msg["params"]["diagnostics"]
            self.notes.append(msg)


def position(text: str, needle: str, offset: int = 0) -> dict:
    for i, row in enumerate(text.splitlines()):
        if needle in row:
            return {"line": i, "character": row.index(needle) + offset}
    raise AssertionError(needle)


@pytest.fixture(scope="module")
def session():
    client = Client()
    result = client.request("initialize", {"processId": None, "rootUri": ROOT.as_uri(), "capabilities": {}})
    caps = result["capabilities"]
    assert caps["hoverProvider"] and caps["definitionProvider"] and caps["documentSymbolProvider"]
    assert "completionProvider" in caps
    client.notify("initialized", {})
    yield client
    assert client.request("shutdown", None) is None
    client.notify("exit", None)
    assert client.proc.wait(timeout=TIMEOUT) == 0
    client.proc.stdout.close()
    client.proc.stderr.close()
    client.proc.stdin.close()


@pytest.fixture(scope="module")
def gpt2(session):
    text = GPT2.read_text()
    uri = GPT2.as_uri()
    session.notify("textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": "flash", "version": 1, "text": text}})
    assert session.diagnostics(uri) == []
    return uri, text


def test_hover_shows_type_shape_and_parameters(session, gpt2):
    uri, text = gpt2
    got = session.request("textDocument/hover", {"textDocument": {"uri": uri}, "position": position(text, "attention(", 2)})
    value = got["contents"]["value"]
    assert "blocks.0.attention: attention -> float32[B, T, 768]" in value
    assert "2,362,368 parameters" in value
    got = session.request("textDocument/hover", {"textDocument": {"uri": uri}, "position": position(text, "output logits", 8)})
    assert "logits: float32[B, T, 50257]" in got["contents"]["value"]


def test_definition_of_a_block_and_a_layer(session, gpt2):
    uri, text = gpt2
    got = session.request("textDocument/definition", {"textDocument": {"uri": uri}, "position": position(text, "Decoder)", 1)})
    assert got["uri"] == uri
    assert got["range"]["start"] == position(text, "Decoder(x)")
    got = session.request("textDocument/definition", {"textDocument": {"uri": uri}, "position": position(text, "wte.weight", 1)})
    assert got["range"]["start"] == position(text, "wte = embedding")


def test_completion_lists_ops_and_the_arguments_of_the_open_call(session, gpt2):
    uri, text = gpt2
    got = session.request("textDocument/completion",
                          {"textDocument": {"uri": uri}, "position": position(text, "approximate", 0)})
    items = {i["label"]: i for i in got["items"]}
    assert items["approximate"]["detail"].startswith("approximate: default")
    assert items["linear"]["detail"].startswith("linear(")
    assert "features" in items["linear"]["detail"]
    assert "Decoder" in items


def test_document_symbols(session, gpt2):
    uri, _ = gpt2
    got = session.request("textDocument/documentSymbol", {"textDocument": {"uri": uri}})
    model = got[0]
    assert model["name"] == "GPT2"
    assert {"tokens", "Decoder", "wte", "wpe", "blocks", "logits"} <= {c["name"] for c in model["children"]}


def test_diagnostics_follow_the_edits(session):
    uri = (ROOT / "specs" / "scratch_lsp_test.flash").as_uri()  # never written: the text lives in the editor
    good = "model M {\n  input x: float32[B, 4]\n  output y = x |> linear(3)\n}\n"
    session.notify("textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": "flash", "version": 1, "text": good}})
    assert session.diagnostics(uri) == []
    bad = good.replace("linear(3)", "lnear(3)")
    session.notify("textDocument/didChange", {"textDocument": {"uri": uri, "version": 2}, "contentChanges": [{"text": bad}]})
    (diag,) = session.diagnostics(uri)
    assert diag["message"].startswith("undefined name `lnear`")
    assert "linear" in diag["message"]  # the did-you-mean hint
    assert diag["range"] == {"start": {"line": 2, "character": 18}, "end": {"line": 2, "character": 23}}
    assert diag["severity"] == 1 and diag["source"] == "flashc"
    session.notify("textDocument/didChange", {"textDocument": {"uri": uri, "version": 3},
                                              "contentChanges": [{"text": "model M {\n  input x: float32[B, 4\n}\n"}]})
    (diag,) = session.diagnostics(uri)
    assert diag["range"]["start"]["line"] == 2
    session.notify("textDocument/didChange", {"textDocument": {"uri": uri, "version": 4}, "contentChanges": [{"text": good}]})
    assert session.diagnostics(uri) == []


# --- the answers themselves, without a session --------------------------------------------------------

def test_hover_falls_back_to_op_documentation():
    a = analyze("model M {\n  input x: float32[B, 4]\n  output y = x |> linear(3)\n}\n", "m.flash")
    assert "features" in hover(a, 3, 20)


def test_definition_of_an_import_opens_the_file(tmp_path):
    (tmp_path / "lib.flash").write_text("model L {\n  input x: float32[B, 4]\n  block Twice(x) {\n    return x + x\n  }\n  output y = x |> Twice\n}\n")
    text = 'from "lib.flash" import Twice\nmodel M {\n  input x: float32[B, 4]\n  output y = x |> Twice\n}\n'
    path = str(tmp_path / "m.flash")
    a = analyze(text, path)
    assert a.diagnostics == []
    span = definition(a, 4, 20)
    assert (Path(span.file).name, span.line, span.col) == ("lib.flash", 3, 9)
    span = definition(a, 1, 8)
    assert Path(span.file).name == "lib.flash" and span.line == 1


def test_completion_inside_a_call_offers_its_arguments_first():
    a = analyze("model M {\n  input x: float32[B, 4]\n  output y = x |> conv2d(\n}\n", "m.flash")
    got = completions(a, 3, 26)
    assert got[0].kind == "argument" and {"kernel", "stride", "padding"} <= {c.label for c in got if c.kind == "argument"}

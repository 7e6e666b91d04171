// Starts `flashc lsp` for .flash files: diagnostics, hover, definitions, completion, outline.
// The highlighting needs nothing of this file; it comes from syntaxes/flash.tmLanguage.json.
const vscode = require("vscode");
const { LanguageClient } = require("vscode-languageclient/node");

let client;

function activate(context) {
  const command = vscode.workspace.getConfiguration("flash").get("server.command") || "flashc";
  const server = { command, args: ["lsp"] };
  client = new LanguageClient(
    "flash",
    "flashc language server",
    { run: server, debug: server },
    { documentSelector: [{ scheme: "file", language: "flash" }, { scheme: "untitled", language: "flash" }] }
  );
  context.subscriptions.push(client);
  return client.start();
}

function deactivate() {
  return client ? client.stop() : undefined;
}

module.exports = { activate, deactivate };

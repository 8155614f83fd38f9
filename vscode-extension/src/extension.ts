// Infill for VS Code: starts `infill lsp` over stdio and renders what it answers. The server does all the work
// (sizing, sampling, post-processing); this client shows ghost text, runs the code actions, and reports status.
import * as vscode from "vscode";
import {
  CodeAction,
  CodeActionKind,
  CodeActionRequest,
  CodeActionResolveRequest,
  CodeActionTriggerKind,
  DidChangeConfigurationNotification,
  ExecuteCommandRequest,
  LanguageClient,
  LanguageClientOptions,
  LSPErrorCodes,
  Range,
  ResponseError,
  State,
} from "vscode-languageclient/node";
import { SECTION, changesLaunch, launch, serverSettings } from "./config";
import { Notice, STATE_NOTIFICATION, STATUS_REQUEST, StatusBar } from "./status";

const FILL_RANGE = "infill.fillRange"; // the server's command: regenerate [uri, range] and apply it

let client: LanguageClient | undefined;
let output: vscode.LogOutputChannel;
let statusBar: StatusBar;

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  output = vscode.window.createOutputChannel("Infill", { log: true });
  statusBar = new StatusBar(() => client);
  context.subscriptions.push(
    output,
    statusBar,
    vscode.commands.registerCommand("infill.fixBlock", fixBlock),
    vscode.commands.registerCommand("infill.fillSelection", fillSelection),
    vscode.commands.registerCommand("infill.restart", restart),
    vscode.commands.registerCommand("infill.showStatus", showStatus),
    vscode.workspace.onDidChangeConfiguration(async (event) => {
      if (changesLaunch(event)) {
        await restart();
      } else if (event.affectsConfiguration(SECTION) && client?.state === State.Running) {
        await client.sendNotification(DidChangeConfigurationNotification.type, { settings: serverSettings() });
      }
    }),
  );
  void start(); // activation does not wait for the server
}

export async function deactivate(): Promise<void> {
  await client?.stop();
}

function clientOptions(): LanguageClientOptions {
  return {
    documentSelector: [{ scheme: "file" }, { scheme: "untitled" }],
    initializationOptions: serverSettings,
    outputChannel: output,
    middleware: {
      // VS Code shows the suggestion as ghost text; the completion list would ask the model a second time.
      provideCompletionItem: () => undefined,
      // An action chosen from the lightbulb menu that comes back without an edit: say why (the server refused code
      // that does not parse, or the model ran out of time). The commands below say it themselves.
      resolveCodeAction: async (item, token, next) => {
        const resolved = await next(item, token);
        const error = (resolved as { data?: { error?: string } } | null | undefined)?.data?.error;
        if (resolved && !resolved.edit && error && !token.isCancellationRequested) {
          void vscode.window.showWarningMessage(`Infill: ${error}`);
        }
        return resolved;
      },
      provideInlineCompletionItems: async (document, position, context, token, next) => {
        const started = performance.now();
        const result = await next(document, position, context, token);
        const items = Array.isArray(result) ? result : result?.items;
        if (items && items.length > 0) {
          statusBar.recordLatency(performance.now() - started);
        }
        return result;
      },
      workspace: {
        // The server pulls section "infill": answer with its own keys only, not the launch settings.
        configuration: async (params, token, next) => {
          const values = await next(params, token);
          if (values instanceof ResponseError) {
            return values;
          }
          return params.items.map((item, i) => (item.section === SECTION ? serverSettings() : values[i]));
        },
      },
    },
  };
}

async function start(): Promise<void> {
  const { command, args } = launch();
  output.info(`starting ${[command, ...args].join(" ")}`);
  const lc = (client = new LanguageClient("infill", "Infill", { command, args }, clientOptions()));
  // Also after the client restarts a crashed server by itself.
  lc.onDidChangeState(({ newState }) => statusBar.clientState(newState));
  lc.onNotification(STATE_NOTIFICATION, (notice: Notice) => statusBar.setNotice(notice));
  try {
    await lc.start();
  } catch (error) {
    void vscode.window.showErrorMessage(`Infill: the language server did not start (${command}): ${error}`);
  }
}

async function restart(): Promise<void> {
  const old = client;
  client = undefined;
  await old?.dispose(2000).catch((error) => output.warn(`stopping the server: ${error}`));
  await start();
}

/** The client if it is running, else undefined after telling the user. */
function running(): LanguageClient | undefined {
  if (client?.state !== State.Running) {
    void vscode.window.showWarningMessage("Infill: the language server is not running (Infill: Restart server).");
    return undefined;
  }
  return client;
}

async function fixBlock(): Promise<void> {
  const editor = vscode.window.activeTextEditor;
  const lc = running();
  if (!editor || !lc) {
    return;
  }
  const c2p = lc.code2ProtocolConverter;
  await withProgress("Infill: fixing the block…", async (token) => {
    const actions = await lc.sendRequest(CodeActionRequest.type, {
      textDocument: c2p.asTextDocumentIdentifier(editor.document),
      range: c2p.asRange(editor.selection),
      context: { diagnostics: [], only: [CodeActionKind.QuickFix], triggerKind: CodeActionTriggerKind.Invoked },
    });
    // A Command has a string `command`; a CodeAction to resolve lazily has neither `edit` nor `command` yet.
    const action = actions?.find((a): a is CodeAction => typeof a.command !== "string");
    if (!action) {
      void vscode.window.showInformationMessage("Infill: no block to fix here.");
      return;
    }
    const resolved = action.edit || action.command ? action : await lc.sendRequest(CodeActionResolveRequest.type, action, token);
    const data = (resolved.data ?? {}) as { error?: string; newRange?: Range };
    if (resolved.edit) {
      if (await vscode.workspace.applyEdit(await lc.protocol2CodeConverter.asWorkspaceEdit(resolved.edit))) {
        select(editor, data.newRange);
      }
    } else if (resolved.command) {
      const summary = await lc.sendRequest(ExecuteCommandRequest.type, { command: resolved.command.command, arguments: resolved.command.arguments }, token);
      report(editor, summary, token);
    } else if (!token.isCancellationRequested) {
      void vscode.window.showWarningMessage(`Infill: ${data.error ?? "no change for this block (see the Infill output)"}`);
    }
  });
}

/** What infill.fillRange answers (server/lsp.py fill_range). */
interface FillSummary {
  applied?: boolean;
  error?: string;
  newRange?: Range;
}

/** After infill.fillRange: select the new text, or say why nothing changed. */
function report(editor: vscode.TextEditor, summary: FillSummary | undefined, token: vscode.CancellationToken): void {
  if (summary?.applied) {
    select(editor, summary.newRange);
  } else if (summary && !token.isCancellationRequested) {
    void vscode.window.showWarningMessage(`Infill: ${summary.error ?? "nothing applied"}`);
  }
}

/** Select the text an edit wrote (the server says where it lies once applied). */
function select(editor: vscode.TextEditor, range: Range | undefined): void {
  const lc = client;
  if (range && lc && vscode.window.activeTextEditor === editor) {
    const r = lc.protocol2CodeConverter.asRange(range);
    editor.selection = new vscode.Selection(r.start, r.end);
  }
}

async function fillSelection(): Promise<void> {
  const editor = vscode.window.activeTextEditor;
  const lc = running();
  if (!editor || !lc) {
    return;
  }
  if (editor.selection.isEmpty) {
    void vscode.window.showInformationMessage("Infill: select the code to fill first.");
    return;
  }
  const args = [lc.code2ProtocolConverter.asUri(editor.document.uri), lc.code2ProtocolConverter.asRange(editor.selection)];
  await withProgress("Infill: filling the selection…", async (token) => {
    const summary = await lc.sendRequest(ExecuteCommandRequest.type, { command: FILL_RANGE, arguments: args }, token);
    report(editor, summary, token);
  });
}

async function showStatus(): Promise<void> {
  const lc = running();
  if (!lc) {
    return;
  }
  const status = await lc.sendRequest(STATUS_REQUEST, {});
  output.info(`${STATUS_REQUEST}: ${JSON.stringify(status)}`);
  await statusBar.refresh();
  if ((await vscode.window.showInformationMessage(statusBar.summary(), "Show details")) !== undefined) {
    output.show(true);
  }
}

/** Run a model request under a cancellable notification; a failure becomes a warning, except when the document
 * changed meanwhile or the user cancelled (the server then answers ContentModified or RequestCancelled). */
async function withProgress(title: string, task: (token: vscode.CancellationToken) => Promise<void>): Promise<void> {
  try {
    await vscode.window.withProgress({ location: vscode.ProgressLocation.Notification, title, cancellable: true }, (_progress, token) =>
      task(token),
    );
  } catch (error) {
    const quiet = error instanceof ResponseError && [LSPErrorCodes.ContentModified, LSPErrorCodes.RequestCancelled].includes(error.code);
    if (!quiet) {
      void vscode.window.showWarningMessage(`Infill: ${error instanceof Error ? error.message : error}`);
    }
  }
}

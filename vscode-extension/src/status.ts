// The status-bar item (model, device, last latency) and the progress notification while the model loads.
import * as path from "path";
import * as vscode from "vscode";
import { LanguageClient, State } from "vscode-languageclient/node";

export const STATUS_REQUEST = "infill/status";

/** The parts of the `infill/status` answer shown here (server/lsp.py `status`, server/services.py `status`). */
export interface ServerStatus {
  completions?: number;
  items?: number;
  backend?: {
    backend?: string; // "embedded" | "daemon"
    model?: string | null;
    device?: string;
    state?: string; // "idle" | "loading" | "ready" | "failed"
    error?: string; // why it failed
    connected?: boolean;
    served?: number;
  };
  settings?: { model?: string | null };
}

type Load = "loading" | "ready" | "failed";

/** Whether the model is ready. Uses `backend.state` where the server reports it ("idle" counts as loading: the server
 * starts loading at `initialized`); otherwise a daemon is ready once connected, and an embedded engine once it has
 * answered a request. */
function loadState(status: ServerStatus): Load {
  const backend = status.backend ?? {};
  if (backend.state) {
    return backend.state === "ready" || backend.state === "failed" ? backend.state : "loading";
  }
  if (backend.backend === "daemon") {
    return backend.connected ? "ready" : "loading";
  }
  return (backend.served ?? 0) > 0 ? "ready" : "loading";
}

export class StatusBar implements vscode.Disposable {
  private readonly item = vscode.window.createStatusBarItem(vscode.StatusBarAlignment.Right, 100);
  private status: ServerStatus = {};
  private load: Load | "starting" | "stopped" = "starting";
  private latencyMs: number | undefined;
  private refreshing: Promise<void> | undefined;
  private watching = false;

  constructor(private client: () => LanguageClient | undefined) {
    this.item.command = "infill.showStatus";
    this.item.name = "Infill";
    this.render();
    this.item.show();
  }

  /** The time from asking for a suggestion to getting one (the server's debounce included). */
  recordLatency(ms: number): void {
    this.latencyMs = ms;
    this.render();
    void this.refresh();
  }

  /** Ask the server for its status (one request at a time) and show it. */
  refresh(): Promise<void> {
    this.refreshing ??= this.fetch().finally(() => (this.refreshing = undefined));
    return this.refreshing;
  }

  /** Refresh every half second until the model is ready or failed, with a progress notification meanwhile. */
  async watchLoading(): Promise<void> {
    await this.refresh();
    if (this.load !== "loading" || this.watching) {
      return;
    }
    this.watching = true;
    const model = this.modelName();
    const outcome = await vscode.window.withProgress(
      { location: vscode.ProgressLocation.Notification, title: `Infill: loading ${model}…`, cancellable: false },
      async () => {
        const giveUp = Date.now() + 120_000;
        while (this.load === "loading" && Date.now() < giveUp) {
          await new Promise((resolve) => setTimeout(resolve, 500));
          await this.refresh();
        }
        return this.load;
      },
    );
    this.watching = false;
    if (outcome === "failed") {
      void vscode.window.showErrorMessage(`Infill: the model did not load: ${this.status.backend?.error ?? "see the Infill output"}`);
    }
  }

  /** One line for people: state, model, device, suggestions shown, last latency. */
  summary(): string {
    const backend = this.status.backend ?? {};
    const parts = [`Infill: ${this.load}`, this.modelName(), backend.device ?? backend.backend];
    if (this.status.completions !== undefined) {
      parts.push(`${this.status.items ?? 0} suggestions for ${this.status.completions} requests`);
    }
    if (this.latencyMs !== undefined) {
      parts.push(`last in ${Math.round(this.latencyMs)} ms`);
    }
    return parts.filter(Boolean).join(" · ");
  }

  private async fetch(): Promise<void> {
    const client = this.client();
    if (client === undefined || client.state !== State.Running) {
      this.load = client?.state === State.Starting ? "starting" : "stopped";
    } else {
      try {
        this.status = await client.sendRequest<ServerStatus>(STATUS_REQUEST, {});
        this.load = loadState(this.status);
      } catch {
        this.load = "stopped";
      }
    }
    this.render();
  }

  private modelName(): string {
    const model = this.status.backend?.model ?? this.status.settings?.model;
    return model ? path.basename(model) : "the model";
  }

  private render(): void {
    const backend = this.status.backend ?? {};
    const parts = [this.modelName(), backend.device ?? backend.backend];
    if (this.latencyMs !== undefined) {
      parts.push(`${Math.round(this.latencyMs)} ms`);
    }
    const icon = { starting: "$(loading~spin)", loading: "$(loading~spin)", ready: "$(sparkle)", failed: "$(error)", stopped: "$(circle-slash)" }[this.load];
    const text = parts.filter(Boolean).join(" · ");
    this.item.text = `${icon} ${text}`;
    const error = this.load === "failed" && backend.error ? `: ${backend.error}` : "";
    this.item.tooltip = `Infill: ${this.load}${error}. Click for the server's status.`;
    this.item.accessibilityInformation = { label: `Infill: ${this.load}: ${text}` };
  }

  dispose(): void {
    this.item.dispose();
  }
}

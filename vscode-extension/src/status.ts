// The status-bar item: the server's state (pushed as infill/state), the model's name, the device and the last
// latency; a progress notification while the model loads; a warning with "Open setting" when the server says
// something needs the user (too slow for the deadline, a refused daemon, a model that did not load).
import * as vscode from "vscode";
import { LanguageClient, State } from "vscode-languageclient/node";

export const STATUS_REQUEST = "infill/status";
export const STATE_NOTIFICATION = "infill/state";

/** server/contract.py STATES: what `state` of an infill/state notification can be. */
export const STATES = ["starting", "loading", "ready", "slow", "refused", "unavailable", "failed"] as const;
export type ServerState = (typeof STATES)[number];

/** The infill/state notification (server/notices.py Notice). */
export interface Notice {
  state: ServerState;
  message: string; // one line for people, the fix included
  model?: string; // the model's name
  setting?: string; // the setting (without "infill.") that fixes it
}

/** The parts of the `infill/status` answer shown here (server/lsp.py `status`, server/services.py `status`). */
export interface ServerStatus {
  completions?: number;
  items?: number;
  state?: Notice;
  backend?: { backend?: string; device?: string; error?: string };
}

/** States that a warning brings to the user's attention (once per change); "unavailable" only shows in the bar. */
const WARN: ReadonlySet<ServerState> = new Set(["slow", "refused", "failed"]);
const ICONS: Record<ServerState | "stopped", string> = {
  starting: "$(loading~spin)",
  loading: "$(loading~spin)",
  ready: "$(sparkle)",
  slow: "$(watch)",
  refused: "$(warning)",
  unavailable: "$(debug-disconnect)",
  failed: "$(error)",
  stopped: "$(circle-slash)",
};

export class StatusBar implements vscode.Disposable {
  private readonly item = vscode.window.createStatusBarItem(vscode.StatusBarAlignment.Right, 100);
  private notice: Notice = { state: "starting", message: "starting the language server" };
  private stopped = false;
  private status: ServerStatus = {};
  private latencyMs: number | undefined;
  private refreshing: Promise<void> | undefined;
  private loading: (() => void) | undefined; // ends the loading progress notification
  private warned = "";

  constructor(private client: () => LanguageClient | undefined) {
    this.item.command = "infill.showStatus";
    this.item.name = "Infill";
    this.render();
    this.item.show();
  }

  /** A state from the server: render it, follow loading with a progress notification, warn about problems. */
  setNotice(notice: Notice): void {
    this.notice = notice;
    this.stopped = false;
    this.render();
    if (notice.state === "loading" && !this.loading) {
      void vscode.window.withProgress(
        { location: vscode.ProgressLocation.Notification, title: `Infill: ${notice.message}`, cancellable: false },
        () => new Promise<void>((resolve) => (this.loading = resolve)),
      );
    } else if (notice.state !== "loading" && this.loading) {
      this.loading();
      this.loading = undefined;
    }
    const key = `${notice.state}:${notice.message}`;
    if (WARN.has(notice.state) && key !== this.warned) {
      this.warned = key;
      void this.warn(notice);
    }
    if (notice.state === "ready") {
      this.warned = "";
      void this.refresh();
    }
  }

  private async warn(notice: Notice): Promise<void> {
    const open = notice.setting ? "Open setting" : undefined;
    const show = notice.state === "slow" ? vscode.window.showWarningMessage : vscode.window.showErrorMessage;
    const choice = await show(`Infill: ${notice.message}`, ...(open ? [open] : []));
    if (choice === open && notice.setting) {
      await vscode.commands.executeCommand("workbench.action.openSettings", `infill.${notice.setting}`);
    }
  }

  /** The time from asking for a suggestion to getting one (the server's debounce included). */
  recordLatency(ms: number): void {
    this.latencyMs = ms;
    this.render();
  }

  /** The language client stopped or is starting again. */
  clientState(state: State): void {
    this.stopped = state === State.Stopped;
    if (state === State.Starting) {
      this.notice = { state: "starting", message: "starting the language server", model: this.notice.model };
    }
    this.render();
  }

  /** Ask the server for its status (one request at a time) and show it. */
  refresh(): Promise<void> {
    this.refreshing ??= this.fetch().finally(() => (this.refreshing = undefined));
    return this.refreshing;
  }

  /** One line for people: state, model, device, suggestions shown, last latency. */
  summary(): string {
    const parts = [`Infill: ${this.label()}`, this.notice.model, this.status.backend?.device];
    if (this.status.completions !== undefined) {
      parts.push(`${this.status.items ?? 0} suggestions for ${this.status.completions} requests`);
    }
    if (this.latencyMs !== undefined) {
      parts.push(`last in ${Math.round(this.latencyMs)} ms`);
    }
    return [parts.filter(Boolean).join(" · "), this.notice.state === "ready" ? "" : this.notice.message].filter(Boolean).join(": ");
  }

  private label(): string {
    return this.stopped ? "stopped" : this.notice.state;
  }

  private async fetch(): Promise<void> {
    const client = this.client();
    if (client?.state === State.Running) {
      try {
        this.status = await client.sendRequest<ServerStatus>(STATUS_REQUEST, {});
        if (this.status.state) {
          this.notice = this.status.state;
        }
      } catch {
        // the server went away meanwhile: its state change says so
      }
    }
    this.render();
  }

  private render(): void {
    const parts = [this.notice.model || "Infill", this.status.backend?.device];
    if (this.latencyMs !== undefined && this.notice.state === "ready") {
      parts.push(`${Math.round(this.latencyMs)} ms`);
    }
    const state = this.stopped ? "stopped" : this.notice.state;
    const text = parts.filter(Boolean).join(" · ");
    this.item.text = `${ICONS[state]} ${text}`;
    const problem = !this.stopped && WARN.has(this.notice.state);
    this.item.backgroundColor = problem ? new vscode.ThemeColor("statusBarItem.warningBackground") : undefined;
    this.item.tooltip = `Infill: ${state}: ${this.notice.message}. Click for the server's status.`;
    this.item.accessibilityInformation = { label: `Infill: ${state}: ${text}` };
  }

  dispose(): void {
    this.loading?.();
    this.item.dispose();
  }
}

// The "infill" settings: what starts the server (read here) and what the server reads (sent as they are).
import * as vscode from "vscode";

export const SECTION = "infill";

/** Settings only the extension reads: they decide how the server process starts, so a change restarts it. */
const LAUNCH_KEYS = ["server.command", "pythonPath", "embedded"];

/** Settings the language server reads (server/settings.py), under the same names. */
const SERVER_KEYS = ["model", "daemon", "daemonIdleExit", "debounce", "quality", "actionQuality", "enable", "maxSteps", "lengths", "deadline", "seed", "hideBroken"];

export interface Launch {
  command: string;
  args: string[];
}

export function launch(): Launch {
  const config = vscode.workspace.getConfiguration(SECTION);
  const custom = config.get<string[]>("server.command", []);
  const [command, ...args] = custom.length > 0 ? custom : [config.get<string>("pythonPath") || "python3", "-m", "infill", "lsp"];
  if (config.get<boolean>("embedded", false) && !args.includes("--embedded")) {
    args.push("--embedded");
  }
  return { command, args };
}

/** The server's settings object: every key it knows, defaults included, so that a reset setting resets there too. */
export function serverSettings(): Record<string, unknown> {
  const config = vscode.workspace.getConfiguration(SECTION);
  return Object.fromEntries(SERVER_KEYS.map((key) => [key, config.get(key) ?? null]));
}

export function changesLaunch(event: vscode.ConfigurationChangeEvent): boolean {
  return LAUNCH_KEYS.some((key) => event.affectsConfiguration(`${SECTION}.${key}`));
}

// End-to-end test in a real VS Code: code-server in headless Chromium, driven by playwright-core.
//
//   node test/e2e.mjs [path/to/infill.vsix]        (build it first: npm run package)
//
// It writes a tiny random-init checkpoint, installs the .vsix into a fresh code-server, opens a Python file,
// types, waits for the ghost text, accepts it with Tab and checks that the saved file is the old text with exactly
// the ghost text inserted at the cursor. Then it runs, from the command palette, "Infill: Fix this block" and
// "Infill: Fill selection" (checking that only the block or the selection changed), "Show status" and "Restart
// server". A random model writes noise, so only where text lands is asserted, never what it is.
//
// Environment: INFILL_E2E_HOME (tools, as editors/setup_vscode_e2e.sh installs them), INFILL_PYTHON (the Python
// with `infill` installed; default: the checkout's .venv), CHROMIUM (default /usr/bin/chromium),
// INFILL_E2E_ARTIFACTS (screenshots, logs, timings; default test/artifacts).
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { homedir, tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const EXT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const ROOT = resolve(EXT, "..");
const CODE_SERVER_VERSION = "4.100.3"; // as in editors/setup_vscode_e2e.sh
const HOME = process.env.INFILL_E2E_HOME || join(homedir(), ".cache", "infill", "vscode-e2e");
const CODE_SERVER = join(HOME, `code-server-${CODE_SERVER_VERSION}`, "node_modules", ".bin", "code-server");
const BROWSER = process.env.CHROMIUM || "/usr/bin/chromium";
const PYTHON = process.env.INFILL_PYTHON || (existsSync(join(ROOT, ".venv/bin/python")) ? join(ROOT, ".venv/bin/python") : "python3");
const VSIX = resolve(process.argv[2] || join(EXT, "infill.vsix"));
const ARTIFACTS = resolve(process.env.INFILL_E2E_ARTIFACTS || join(EXT, "test", "artifacts"));
const MOD = process.platform === "darwin" ? "Meta" : "Control";

const SOURCE = `def add(a, b):
    total = a + b
    return total


def main():
    print(add(1, 2))
`;
const TYPED = "    result = add("; // typed at the end of the file, in main()

const started = Date.now();
const timings = {};
const mark = (name) => (timings[name] = (Date.now() - started) / 1000);
const log = (...args) => console.log(`[e2e ${((Date.now() - started) / 1000).toFixed(1)}s]`, ...args);

function check(condition, message) {
  if (!condition) {
    throw new Error(message);
  }
}

function freePort() {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolvePort(port));
    });
  });
}

async function waitFor(what, probe, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value) {
      return value;
    }
    check(Date.now() < deadline, `timed out after ${timeoutMs / 1000} s waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

function run(command, args, options = {}) {
  const result = spawnSync(command, args, { encoding: "utf8", ...options });
  check(result.status === 0, `${command} ${args.join(" ")} failed (${result.status}): ${result.stderr || result.error}`);
  return result.stdout;
}

/** The text of the ghost-text decorations VS Code shows, in document order (first line inline, more lines in a
 * view zone). Spaces render as non-breaking spaces. */
async function ghostText(page) {
  return page.evaluate(() => {
    const editor = document.querySelector(".editor-instance .monaco-editor");
    if (!editor) {
      return null;
    }
    const inline = [...editor.querySelectorAll(".ghost-text-decoration, .ghost-text-decoration-preview")].map((e) => e.textContent);
    const zones = [...editor.querySelectorAll(".view-zones .ghost-text .view-line")];
    zones.sort((a, b) => parseFloat(a.style.top) - parseFloat(b.style.top));
    if (inline.length === 0 && zones.length === 0) {
      return null;
    }
    const lines = [inline.join(""), ...zones.map((z) => z.textContent)];
    return lines.join("\n").replace(/\u00a0/g, " ");
  });
}

async function main() {
  check(existsSync(CODE_SERVER), `no code-server at ${CODE_SERVER}: run editors/setup_vscode_e2e.sh`);
  check(existsSync(BROWSER), `no browser at ${BROWSER}: run editors/setup_vscode_e2e.sh`);
  check(existsSync(VSIX), `no ${VSIX}: run npm run package in vscode-extension/`);
  rmSync(ARTIFACTS, { recursive: true, force: true });
  mkdirSync(ARTIFACTS, { recursive: true });
  const work = mkdtempSync(join(tmpdir(), "infill-vscode-e2e-"));
  const dirs = Object.fromEntries(["ud", "exts", "xdg", "xdgdata", "ws", "browser"].map((d) => [d, join(work, d)]));
  Object.values(dirs).forEach((d) => mkdirSync(d, { recursive: true }));
  const model = join(work, "tiny-random");
  const env = {
    ...process.env,
    XDG_CONFIG_HOME: dirs.xdg,
    XDG_DATA_HOME: dirs.xdgdata,
    HF_HUB_OFFLINE: "1",
    PYTHONPATH: [ROOT, process.env.PYTHONPATH].filter(Boolean).join(":"),
  };
  delete env.INFILL_MODEL;

  log("writing the tiny checkpoint");
  run(PYTHON, ["-m", "infill", "model", "random", model, "--preset", "tiny"], { env, cwd: ROOT });
  mark("model_written");

  const file = join(dirs.ws, "demo.py");
  writeFileSync(file, SOURCE);
  mkdirSync(join(dirs.ud, "User"), { recursive: true });
  const settings = {
    "workbench.startupEditor": "none",
    "workbench.tips.enabled": false,
    "security.workspace.trust.enabled": false,
    "extensions.ignoreRecommendations": true,
    "editor.quickSuggestions": { other: false, comments: false, strings: false },
    "editor.suggestOnTriggerCharacters": false,
    "editor.wordBasedSuggestions": "off",
    "editor.autoClosingBrackets": "never",
    "editor.inlineSuggest.enabled": true,
    "files.autoSave": "off",
    "infill.server.command": [PYTHON, "-m", "infill", "lsp", "--verbose", "--log-file", join(ARTIFACTS, "server.log")],
    "infill.embedded": true,
    "infill.model": model,
    "infill.maxSteps": 2,
    "infill.lengths": [8],
    "infill.seed": 0,
    "infill.quality": "fast",
    "infill.debounce": 50,
    "infill.deadline": 60000,
    "infill.trace.server": "messages",
  };
  writeFileSync(join(dirs.ud, "User", "settings.json"), JSON.stringify(settings, null, 2));
  const csArgs = ["--user-data-dir", dirs.ud, "--extensions-dir", dirs.exts];
  run(CODE_SERVER, [...csArgs, "--install-extension", VSIX], { env });
  mark("extension_installed");

  const port = await freePort();
  const serverLog = [];
  const codeServer = spawn(
    CODE_SERVER,
    [...csArgs, "--bind-addr", `127.0.0.1:${port}`, "--auth", "none", "--disable-telemetry", "--disable-update-check",
      "--disable-workspace-trust", "--disable-getting-started-override", dirs.ws],
    { env, stdio: ["ignore", "pipe", "pipe"], detached: true },
  );
  codeServer.stdout.on("data", (d) => serverLog.push(d.toString()));
  codeServer.stderr.on("data", (d) => serverLog.push(d.toString()));
  let browser;
  let page;
  try {
    await waitFor("code-server", async () => (await fetch(`http://127.0.0.1:${port}/healthz`).catch(() => null))?.ok, 60_000);
    mark("code_server_up");
    browser = await chromium.launchPersistentContext(dirs.browser, {
      executablePath: BROWSER,
      headless: true,
      args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
      viewport: { width: 1280, height: 800 },
    });
    page = browser.pages()[0] ?? (await browser.newPage());
    await page.goto(`http://127.0.0.1:${port}/?folder=${encodeURIComponent(dirs.ws)}`);
    await page.waitForSelector(".monaco-workbench", { timeout: 60_000 });
    mark("workbench_up");

    log("opening demo.py");
    await openFile(page, "demo.py");
    await page.waitForSelector(".editor-instance .monaco-editor .view-lines", { timeout: 30_000 });
    await page.click(".editor-instance .monaco-editor .view-lines");
    // Type once the model is ready: VS Code asks a provider registered later only at the next keystroke, and the
    // status bar then shows a suggestion's latency, not the model's load time.
    await page.waitForSelector(".part.statusbar [aria-label^='Infill: ready']", { timeout: 120_000 });
    mark("model_ready");

    // -- ghost text at the end of main(), accepted with Tab -------------------------------------------------------
    await page.keyboard.press(`${MOD}+End`);
    await page.keyboard.type(TYPED, { delay: 20 });
    await save(page);
    const before = readFileSync(file, "utf8");
    check(before === SOURCE + TYPED, `the typed text did not land as expected: ${JSON.stringify(before)}`);
    mark("typed");
    log("waiting for ghost text");
    const ghost = await waitFor("ghost text", () => ghostText(page), 90_000);
    mark("ghost_text_shown");
    log(`ghost text: ${JSON.stringify(ghost)}`);
    await page.waitForTimeout(300); // let the status bar show the latency
    await page.screenshot({ path: join(ARTIFACTS, "ghost-text.png") });
    await page.keyboard.press("Tab");
    await waitFor("the ghost text to go", async () => (await ghostText(page)) === null, 10_000);
    await save(page);
    const accepted = readFileSync(file, "utf8");
    const cursor = before.length;
    const expected = before.slice(0, cursor) + ghost + before.slice(cursor);
    check(accepted === expected, `accepted text differs from the ghost text:\n  ghost ${JSON.stringify(ghost)}\n  file  ${JSON.stringify(accepted)}\n  want  ${JSON.stringify(expected)}`);
    mark("accepted");
    log("accepted text matches the ghost text");
    await page.screenshot({ path: join(ARTIFACTS, "accepted.png") });

    // -- "Infill: Fix this block" from the command palette, on the body of add() -----------------------------------
    await page.keyboard.press("Escape");
    await page.keyboard.press(`${MOD}+Home`);
    await page.keyboard.press("ArrowDown"); // line 2: `total = a + b`
    await page.keyboard.press("End");
    await runCommand(page, "Infill: Fix this block");
    await waitForEdit(page, "the block to change");
    await save(page);
    const fixed = readFileSync(file, "utf8");
    const blockEnd = accepted.indexOf("\n\n\ndef main");
    const [fixFrom, fixTo] = changedRegion(accepted, fixed);
    check(fixFrom >= 0 && fixTo <= blockEnd, `Fix this block changed text outside add(): ${JSON.stringify(fixed)}`);
    mark("block_fixed");
    log(`fixed block: ${JSON.stringify(fixed.slice(0, fixed.length - (accepted.length - blockEnd)))}`);
    await page.screenshot({ path: join(ARTIFACTS, "fix-block.png") });

    // -- "Infill: Fill selection" on `print(add(1, 2))`: the server applies the edit with workspace/applyEdit ------
    const selected = "print(add(1, 2))";
    const line = fixed.slice(0, fixed.indexOf(selected)).split("\n").length;
    await page.keyboard.press(`${MOD}+G`);
    await page.keyboard.type(String(line));
    await page.keyboard.press("Enter");
    await page.keyboard.press("Home"); // the first non-blank character
    await page.keyboard.press("Shift+End");
    await runCommand(page, "Infill: Fill selection");
    await waitForEdit(page, "the selection to change");
    await save(page);
    const filled = readFileSync(file, "utf8");
    const [fillFrom, fillTo] = changedRegion(fixed, filled);
    const selStart = fixed.indexOf(selected);
    check(fillFrom >= selStart && fillTo <= selStart + selected.length, `Fill selection changed text outside the selection: ${JSON.stringify(filled)}`);
    mark("selection_filled");
    log(`filled selection: ${JSON.stringify(filled.slice(selStart, filled.length - (fixed.length - selStart - selected.length)))}`);

    // -- "Infill: Show status" writes the server's status to the Infill output; "Infill: Restart server" ----------
    await runCommand(page, "Infill: Show status");
    await page.waitForSelector(".notification-toast .notification-list-item-message:has-text('Infill: ready')", { timeout: 30_000 });
    mark("status_shown");
    await page.screenshot({ path: join(ARTIFACTS, "status.png") });
    await runCommand(page, "Infill: Restart server");
    await page.waitForSelector(".part.statusbar [aria-label^='Infill: starting']", { timeout: 30_000 });
    await page.waitForSelector(".part.statusbar [aria-label^='Infill: ready']", { timeout: 120_000 });
    mark("restarted");
    mark("done");
  } catch (error) {
    if (page) {
      await page.screenshot({ path: join(ARTIFACTS, "failure.png") }).catch(() => {});
      writeFileSync(join(ARTIFACTS, "failure.html"), await page.content().catch(() => ""));
    }
    throw error;
  } finally {
    await browser?.close().catch(() => {});
    try {
      process.kill(-codeServer.pid, "SIGTERM"); // its process group: code-server, the extension host, infill lsp
    } catch {}
    writeFileSync(join(ARTIFACTS, "code-server.log"), serverLog.join(""));
    writeFileSync(join(ARTIFACTS, "timings.json"), JSON.stringify(timings, null, 2));
    copyExtensionLogs(dirs.ud);
    rmSync(work, { recursive: true, force: true });
  }
}

/** The span [from, to) of `before` that differs in `after` (common prefix and suffix removed); throws if equal. */
function changedRegion(before, after) {
  check(before !== after, "the text did not change");
  let head = 0;
  while (head < Math.min(before.length, after.length) && before[head] === after[head]) head++;
  let tail = 0;
  while (tail < Math.min(before.length, after.length) - head && before[before.length - 1 - tail] === after[after.length - 1 - tail]) tail++;
  return [head, before.length - tail];
}

/** Wait until the active editor is dirty; fail at once on a warning or info message from the extension. */
async function waitForEdit(page, what) {
  const outcome = await waitFor(what, async () => {
    if (await page.$(".tab.active.dirty")) {
      return "edited";
    }
    const messages = await page.$$eval(".notification-toast .notification-list-item-message", (els) => els.map((e) => e.textContent));
    return messages.find((m) => /^Infill: (?!.*…)/.test(m));
  }, 90_000);
  check(outcome === "edited", `${what}: ${outcome}`);
}

async function openFile(page, name) {
  await page.keyboard.press(`${MOD}+P`);
  await page.waitForSelector(".quick-input-widget input", { state: "visible" });
  await page.keyboard.type(name);
  await page.waitForSelector(`.quick-input-list .monaco-list-row[aria-label*='${name}']`);
  await page.keyboard.press("Enter");
}

async function runCommand(page, title) {
  await page.keyboard.press("F1");
  await page.waitForSelector(".quick-input-widget input", { state: "visible" });
  await page.keyboard.type(title);
  await page.waitForSelector(`.quick-input-list .monaco-list-row[aria-label*='${title}']`);
  await page.keyboard.press("Enter");
}

async function save(page) {
  await page.keyboard.press(`${MOD}+S`);
  await waitFor("the save", async () => (await page.$(".tab.active.dirty")) === null, 10_000);
}

/** The Infill output channel and the extension host log, for a failed run. */
function copyExtensionLogs(userData) {
  const found = spawnSync("find", [join(userData, "logs"), "-name", "*.log"], { encoding: "utf8" }).stdout.split("\n").filter(Boolean);
  const wanted = found.filter((f) => /Infill|exthost/i.test(f));
  writeFileSync(join(ARTIFACTS, "extension.log"), wanted.map((f) => `== ${f}\n${readFileSync(f, "utf8")}`).join("\n"));
}

main().then(
  () => {
    log(`passed: ${JSON.stringify(timings)}`);
  },
  (error) => {
    console.error(`[e2e] FAILED: ${error.stack || error}`);
    process.exitCode = 1;
  },
);

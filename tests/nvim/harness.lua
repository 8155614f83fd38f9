--- A small test runner for the plugin in a real headless Neovim.
---
--- Each test runs in a coroutine, so that waiting yields to Neovim's main loop: typed keys are
--- processed, insert mode is entered, autocmds fire and LSP answers arrive as they would for a user.
--- The suite exits with :qa! when every test passed and :cq otherwise (pytest sees the status).
---
--- Environment (set by tests/test_nvim.py): INFILL_TEST_PYTHON (the interpreter that runs
--- `-m infill lsp`), INFILL_TEST_DIR (a scratch folder), INFILL_MODEL (the tiny random checkpoint),
--- INFILL_TEST_DAEMON (the address of this suite's model daemon, which the server starts).

local H = {}

local SUITE_TIMEOUT_MS = tonumber(vim.env.INFILL_TEST_SUITE_TIMEOUT_MS) or 110000

--- Settings for fast, deterministic requests: a couple of denoising steps of the tiny model, through the
--- model daemon that the server starts on this suite's own address (INFILL_TEST_DAEMON).
H.settings = { maxSteps = 2, lengths = { 8 }, seed = 0, debounce = 0, quality = "fast", deadline = 60000,
               daemon = vim.env.INFILL_TEST_DAEMON, daemonIdleExit = 30,
               hideBroken = false }  -- random weights: the plumbing is under test, not the code

--- The server command: `infill lsp`, which starts (or reuses) the daemon; its model runs on one CPU thread.
function H.cmd()
  return { vim.env.INFILL_TEST_PYTHON or "python3", "-m", "infill", "lsp", "--device", "cpu", "--threads", "1" }
end

--- What the command line showed (nvim_echo), in order, for the tests of progress and state messages.
H.echoed = {}
local echo = vim.api.nvim_echo
vim.api.nvim_echo = function(chunks, history, opts)
  local text = table.concat(vim.tbl_map(function(c) return c[1] end, chunks))
  table.insert(H.echoed, { text = text, at = vim.uv.now() })
  return echo(chunks, history, opts)
end

--- The sample file every test edits.
H.sample = {
  "def add(a, b):",
  "    total = a + b",
  "    return total",
  "",
  "",
  "def main():",
  "    print(add(1, 2))",
}

local function out(line)
  io.stdout:write("\n" .. line) -- on a line of its own after Neovim's own echoes
  io.stdout:flush()
end
H.log = out

-- == waiting ======================================================================================

--- Yield to the main loop for `ms`.
function H.sleep(ms)
  local co = assert(coroutine.running(), "H.sleep outside a test")
  vim.defer_fn(function()
    local ok, err = coroutine.resume(co)
    if not ok then
      H.abort("coroutine error: " .. tostring(err))
    end
  end, ms)
  coroutine.yield()
end

--- Wait until `cond()` is truthy (and return its value); fail after `ms`.
function H.wait(ms, cond, what)
  local deadline = vim.uv.now() + ms
  while true do
    local ok, value = pcall(cond)
    if ok and value then
      return value
    end
    if vim.uv.now() > deadline then
      error(("timed out after %d ms waiting for %s%s"):format(ms, what or "a condition",
        ok and "" or (" (last error: " .. tostring(value) .. ")")), 2)
    end
    H.sleep(20)
  end
end

--- Type `keys` as a user would (mappings apply).
function H.feed(keys)
  vim.api.nvim_feedkeys(vim.api.nvim_replace_termcodes(keys, true, false, true), "mt", false)
  H.sleep(10)
end

-- == assertions ===================================================================================

function H.eq(expected, actual, what)
  if not vim.deep_equal(expected, actual) then
    error(("%s:\n  expected %s\n  got      %s"):format(what or "values differ", vim.inspect(expected),
      vim.inspect(actual)), 2)
  end
end

function H.truthy(value, what)
  if not value then
    error(what or "expected a true value", 2)
  end
  return value
end

-- == the plugin ===================================================================================

--- Write the sample to a fresh file, open it, wait for the infill client; returns buf, client.
function H.open(name, lines)
  local path = vim.fs.joinpath(assert(vim.env.INFILL_TEST_DIR, "INFILL_TEST_DIR is not set"), name)
  vim.fn.writefile(lines or H.sample, path)
  vim.cmd.edit(vim.fn.fnameescape(path))
  local buf = vim.api.nvim_get_current_buf()
  local client = H.wait(60000, function()
    local c = require("infill.lsp").client(buf)
    return c and c.initialized and c
  end, "the infill client to attach and initialize")
  return buf, client
end

function H.lines(buf)
  return vim.api.nvim_buf_get_lines(buf or 0, 0, -1, false)
end

--- `lines` with the LSP `range` replaced by `text`: what applying the edit to `lines` must give.
function H.splice(lines, range, text, encoding)
  local byte_col = require("infill.lsp").byte_col
  local sr, er = range.start.line, range["end"].line
  local sc = byte_col(lines[sr + 1], range.start.character, encoding)
  local ec = byte_col(lines[er + 1], range["end"].character, encoding)
  local head = vim.list_slice(lines, 1, sr)
  table.insert(head, lines[sr + 1]:sub(1, sc) .. text .. lines[er + 1]:sub(ec + 1))
  local joined = table.concat(head, "\n")
  return vim.list_extend(vim.split(joined, "\n", { plain = true }), vim.list_slice(lines, er + 2))
end

--- "L:C-L:C <- "text"" for the log.
function H.show_edit(range, text)
  local s, e = range.start, range["end"]
  return ("%d:%d-%d:%d <- %s"):format(s.line, s.character, e.line, e.character, vim.inspect(text))
end

--- Record the answers of `method` requests made through `client` (answers[#answers] is the latest).
function H.record(client, method)
  local answers = {}
  local request = client.request
  client.request = function(self, m, params, handler, ...)
    if m == method and handler then
      local inner = handler
      handler = function(err, result, ...)
        table.insert(answers, { err = err, result = result, params = params })
        return inner(err, result, ...)
      end
    end
    return request(self, m, params, handler, ...)
  end
  return answers
end

--- The messages given to vim.notify while `fn` runs and until the test ends (they are logged, not echoed).
local notified
function H.notifications(fn)
  notified = {}
  local list = notified
  fn()
  return list
end
vim.notify = function(msg, level)
  out(("     notify(%s): %s"):format(level or "-", msg:gsub("\n", " ")))
  if notified then
    table.insert(notified, msg)
  end
end

--- The first item of the latest answer that has one (answers recorded by H.record), and that answer.
function H.last_item(answers)
  for i = #answers, 1, -1 do
    local result = answers[i].result
    local items = type(result) == "table" and (result.items or result) or {}
    if items[1] then
      return items[1], answers[i]
    end
  end
end

--- Answer the next `method` request made through `client` with `result`, without asking the server.
function H.stub(client, method, result)
  local request = client.request
  client.request = function(self, m, params, handler, ...)
    if m ~= method then
      return request(self, m, params, handler, ...)
    end
    client.request = request -- once
    vim.schedule(function() handler(nil, result, { method = m, client_id = self.id }) end)
    return true, -1
  end
end

--- The next `User InfillDone` event's data, after running `fn`.
function H.outcome(fn, ms)
  local got
  vim.api.nvim_create_autocmd("User", { pattern = "InfillDone", once = true, callback = function(ev)
    got = ev.data
  end })
  fn()
  return H.wait(ms or 60000, function() return got end, "InfillDone")
end

-- == running ======================================================================================

function H.abort(message)
  out("ABORT " .. message)
  vim.cmd("cquit 2")
end

--- Run `tests` ({ {name, fn}, ... }) one after another, then quit with the suite's status.
function H.run(tests)
  vim.defer_fn(function()
    H.abort(("the suite took longer than %d ms"):format(SUITE_TIMEOUT_MS))
  end, SUITE_TIMEOUT_MS)
  local co = coroutine.create(function()
    local failed = 0
    for _, t in ipairs(tests) do
      local started = vim.uv.hrtime()
      local ok, err = xpcall(t[2], debug.traceback)
      local ms = (vim.uv.hrtime() - started) / 1e6
      if ok then
        out(("ok   %s (%.0f ms)"):format(t[1], ms))
      else
        failed = failed + 1
        out(("FAIL %s (%.0f ms)\n%s"):format(t[1], ms, err))
      end
      vim.cmd("silent! stopinsert")
      H.sleep(10)
    end
    out(("%d passed, %d failed\n"):format(#tests - failed, failed))
    vim.cmd(failed == 0 and "qall!" or "cquit 1")
  end)
  vim.schedule(function()
    local ok, err = coroutine.resume(co)
    if not ok then
      H.abort("coroutine error: " .. tostring(err))
    end
  end)
end

return H

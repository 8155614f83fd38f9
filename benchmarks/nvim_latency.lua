-- Last keystroke -> ghost text in a real Neovim 0.12 (its built-in vim.lsp.inline_completion), as a user with
-- `require("infill").setup{}` sees it: the bundled model, through the daemon the server starts, infill's default
-- settings. Run by benchmarks/editor_latency.py, which sets:
--   INFILL_TEST_PYTHON, INFILL_TEST_DIR, INFILL_TEST_DAEMON (as tests/nvim/harness.lua reads them),
--   INFILL_BENCH_MODULE (the file to type into), INFILL_BENCH_LINES (JSON list of lines to type),
--   INFILL_BENCH_INTERVAL_MS (between keys), INFILL_BENCH_OUT (where the JSON result goes).
local H = require("harness")

local port = vim.env.INFILL_TEST_DAEMON:match(":(%d+)$")
local python = vim.env.INFILL_TEST_PYTHON
require("infill").setup({ cmd = { python, "-m", "infill", "lsp" }, settings = { daemon = vim.env.INFILL_TEST_DAEMON } })

local ns = vim.api.nvim_create_namespace("nvim.lsp.inline_completion")

local function daemon_status()
  local out = vim.system({ python, "-m", "infill", "daemon", "status", "--port", port }, { text = true }):wait()
  local status = vim.json.decode(out.stdout)
  return vim.tbl_extend("force", status, status.extra)
end

H.run({
  { "last keystroke -> ghost text", function()
    local buf = H.open("module.py", vim.fn.readfile(vim.env.INFILL_BENCH_MODULE))
    H.wait(180000, function()
      local s = require("infill.state").current
      return s and s.state == "ready"
    end, "the model to be ready")
    local interval = tonumber(vim.env.INFILL_BENCH_INTERVAL_MS)
    local before = daemon_status()
    local latencies, request_seconds = {}, 0
    for _, text in ipairs(vim.json.decode(vim.env.INFILL_BENCH_LINES)) do
      vim.api.nvim_win_set_cursor(0, { vim.api.nvim_buf_line_count(buf), 0 })
      H.feed("o")
      for ch in text:gmatch(".") do
        H.feed(ch)
        H.sleep(interval)
      end
      local last = vim.uv.now() - interval
      local shown = pcall(H.wait, 60000, function()
        return #vim.api.nvim_buf_get_extmarks(buf, ns, 0, -1, {}) > 0
      end, "the ghost text")
      table.insert(latencies, shown and (vim.uv.now() - last) or vim.NIL)
      request_seconds = math.max(request_seconds, (daemon_status().last or {}).seconds or 0)
      H.feed("<Esc>")
      H.sleep(200)
    end
    local after = daemon_status()
    local result = {
      interval_ms = interval,
      latencies_ms = latencies,
      request_seconds = request_seconds,
      served = after.served - before.served,
      cancelled = after.cancelled - before.cancelled,
      failed = after.failed - before.failed,
      daemon_cpu_seconds = after.cpu_seconds - before.cpu_seconds,
    }
    H.log("     " .. vim.json.encode(result))
    vim.fn.writefile({ vim.json.encode(result) }, vim.env.INFILL_BENCH_OUT)
  end },
})

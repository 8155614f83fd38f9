--- :checkhealth infill — Neovim version, the server command, a server that starts and answers
--- infill/status, and the model it uses.

local M = {}

local SETTLE_MS = 60000 -- how long :checkhealth waits for a starting daemon or a loading model
local STATUS_TIMEOUT_MS = 60000 -- first start: imports, and the model load when embedded

local function check_version()
  local v = vim.version()
  local version = ("%d.%d.%d"):format(v.major, v.minor, v.patch)
  if vim.lsp.inline_completion then
    vim.health.ok(("Neovim %s: suggestions through vim.lsp.inline_completion"):format(version))
  elseif vim.fn.has("nvim-0.10") == 1 then
    vim.health.ok(("Neovim %s: suggestions through the plugin's ghost-text renderer"):format(version))
  else
    vim.health.error(("Neovim %s is too old"):format(version), { "Neovim 0.10 or newer is needed; 0.12 is best" })
  end
end

---@return infill.Config
local function options()
  local infill = require("infill")
  if infill.options then
    return infill.options
  end
  vim.health.info("setup() has not been called: checking the default options")
  return require("infill.config").merge({})
end

local function check_command(cmd)
  local exe = vim.fn.exepath(cmd[1])
  if exe == "" then
    vim.health.error(("`%s` is not on PATH"):format(cmd[1]), {
      "pip install infill (its virtualenv's bin/ on PATH), or set the command:",
      'require("infill").setup{ cmd = { "/path/to/venv/bin/infill", "lsp" } }',
    })
    return false
  end
  vim.health.ok(("server command: %s (%s)"):format(table.concat(cmd, " "), exe))
  return true
end

--- A running infill client, else a fresh one that is stopped afterwards.
---@return vim.lsp.Client?, boolean started
local function client_for(opts)
  local running = vim.lsp.get_clients({ name = require("infill.lsp").name })[1]
  if running then
    return running, false
  end
  local config = require("infill.lsp").client_config(opts)
  config.name, config.root_dir = "infill-health", vim.fn.getcwd()
  local id
  if vim.fn.has("nvim-0.11") == 1 then
    id = vim.lsp.start(config, { attach = false, reuse_client = function() return false end, silent = true })
  else
    id = vim.lsp.start_client(config)
  end
  return id and vim.lsp.get_client_by_id(id), true
end

local function check_server(opts)
  local lsp = require("infill.lsp")
  local client, started = client_for(opts)
  if not client then
    vim.health.error("the server did not start", { "run the command in a terminal to see why", "see :LspLog" })
    return
  end
  local reply, err = nil, "the server did not finish initializing"
  if vim.wait(STATUS_TIMEOUT_MS, function() return client.initialized or client.is_stopped and client:is_stopped() end, 50)
    and client.initialized then
    reply, err = lsp.request_sync(client, lsp.methods.status, vim.empty_dict(), STATUS_TIMEOUT_MS)
    local deadline = vim.uv.now() + SETTLE_MS -- a daemon that starts, a model that loads: wait for the outcome
    while reply and reply.result and type(reply.result.state) == "table"
      and (reply.result.state.state == "starting" or reply.result.state.state == "loading") and vim.uv.now() < deadline do
      vim.wait(250)
      reply, err = lsp.request_sync(client, lsp.methods.status, vim.empty_dict(), STATUS_TIMEOUT_MS)
    end
  end
  if started then
    lsp.stop(client)
  end
  if not reply or reply.err then
    local why = err or (reply and reply.err and reply.err.message) or "no answer"
    vim.health.error(("the server did not answer infill/status: %s"):format(why), { "see :LspLog" })
    return
  end
  local status = reply.result or {}
  local backend = status.backend or {}
  vim.health.ok(("the server answers infill/status (%s backend%s)"):format(backend.backend or "unknown",
    backend.address and (" at " .. backend.address) or ""))
  local settings = status.settings or {}
  local model = backend.model or settings.model
  if model and model ~= vim.NIL then
    vim.health.ok(("model: %s"):format(model))
  else
    vim.health.ok("model: the bundled default (set $INFILL_MODEL or settings.model for another)")
  end
  local state = type(status.state) == "table" and status.state or {}
  if state.state == "ready" then
    vim.health.ok(("state: %s"):format(state.message))
  elseif state.state == "refused" or state.state == "failed" then
    vim.health.error(("state: %s"):format(state.message), { "see :LspLog" })
  elseif state.state then
    vim.health.warn(("state: %s: %s"):format(state.state, state.message), { "infill daemon status", "see :LspLog" })
  end
end

function M.check()
  vim.health.start("infill")
  check_version()
  local opts = options()
  if check_command(opts.cmd) then
    check_server(opts)
  end
end

return M

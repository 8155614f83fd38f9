--- Starting `infill lsp` through vim.lsp and talking to it, on Neovim 0.10 to 0.12.
---
--- 0.11+: `vim.lsp.config("infill", ...)` + `vim.lsp.enable("infill")` (so `:checkhealth vim.lsp` and
--- `:lsp` know it). 0.10: a FileType autocmd that calls `vim.lsp.start` with the project root.
--- The call helpers hide the switch from `client.request(...)` (0.10) to `client:request(...)` (0.11).

local M = {}

M.name = "infill"
M.methods = {
  inline = "textDocument/inlineCompletion",
  status = "infill/status",
  fill_range = "infill.fillRange",
  state = "infill/state",
}

local has_011 = vim.fn.has("nvim-0.11") == 1

--- The settings sent to the server: `opts.settings`, and `debounce = 0` when Neovim 0.12's own client
--- shows the suggestions and no debounce is set, since that client already waits 200 ms after the last
--- keystroke before it asks (the server would wait again).
---@param opts infill.Config
---@return table
function M.server_settings(opts)
  local settings = vim.deepcopy(opts.settings)
  if settings.debounce == nil and opts.inline and require("infill.suggestion").renderer(opts) == "native" then
    settings.debounce = 0
  end
  -- an empty Lua table would go out as a JSON array, which the server rejects as settings
  return next(settings) and settings or vim.empty_dict()
end

--- The vim.lsp client config of `infill lsp` (name, cmd, settings).
---@param opts infill.Config
---@return vim.lsp.ClientConfig
function M.client_config(opts)
  local settings = M.server_settings(opts)
  return {
    name = M.name,
    cmd = opts.cmd,
    init_options = settings,
    settings = { infill = settings }, -- answers the server's workspace/configuration
    handlers = { [M.methods.state] = require("infill.state").handle },
  }
end

--- Start the server for the configured filetypes (now for open buffers, later on FileType).
---@param opts infill.Config
function M.enable(opts)
  local filetypes = require("infill.config").all_filetypes(opts)
  local config = M.client_config(opts)
  if vim.lsp.config and vim.lsp.enable then
    config.filetypes = filetypes
    config.root_markers = opts.root_markers
    vim.lsp.config(M.name, config)
    vim.lsp.enable(M.name)
    return
  end
  local group = vim.api.nvim_create_augroup("infill.lsp", { clear = true })
  local function start(buf)
    if vim.bo[buf].buftype ~= "" or not vim.list_contains(filetypes, vim.bo[buf].filetype) then
      return
    end
    local c = vim.deepcopy(config)
    c.root_dir = vim.fs.root(buf, opts.root_markers)
    vim.lsp.start(c, { bufnr = buf })
  end
  vim.api.nvim_create_autocmd("FileType", { group = group, callback = function(ev) start(ev.buf) end })
  for _, buf in ipairs(vim.api.nvim_list_bufs()) do
    if vim.api.nvim_buf_is_loaded(buf) then
      start(buf)
    end
  end
end

--- The infill client attached to `buf` (default: the current buffer), or nil.
---@param buf? integer
---@return vim.lsp.Client?
function M.client(buf)
  return vim.lsp.get_clients({ name = M.name, bufnr = buf or vim.api.nvim_get_current_buf() })[1]
end

--- Push `opts.settings` to running clients (workspace/didChangeConfiguration) and to clients to come.
---@param opts infill.Config
function M.configure(opts)
  local settings = M.server_settings(opts)
  if vim.lsp.config then
    vim.lsp.config(M.name, { init_options = settings, settings = { infill = settings } })
  end
  for _, client in ipairs(vim.lsp.get_clients({ name = M.name })) do
    client.settings = { infill = settings }
    M.notify(client, "workspace/didChangeConfiguration", { settings = { infill = settings } })
  end
end

-- == version-independent calls ===================================================================

---@return boolean, integer? request id
function M.request(client, method, params, handler, buf)
  if has_011 then
    return client:request(method, params, handler, buf)
  end
  return client.request(method, params, handler, buf)
end

---@return {err: table?, result: any}?, string? error
function M.request_sync(client, method, params, timeout_ms, buf)
  if has_011 then
    return client:request_sync(method, params, timeout_ms, buf)
  end
  return client.request_sync(method, params, timeout_ms, buf)
end

function M.notify(client, method, params)
  if has_011 then
    return client:notify(method, params)
  end
  return client.notify(method, params)
end

function M.stop(client)
  if has_011 then
    return client:stop()
  end
  return client.stop()
end

function M.cancel(client, id)
  if has_011 then
    return client:cancel_request(id)
  end
  return client.cancel_request(id)
end

-- == positions: LSP (line, character in the client's encoding) <-> buffer (row, byte column) =========

local function line_of(buf, row)
  return vim.api.nvim_buf_get_lines(buf, row, row + 1, false)[1] or ""
end

--- The LSP position of byte column `col` on 0-based `row`.
---@return lsp.Position
function M.position(buf, row, col, encoding)
  local line = line_of(buf, row)
  col = math.min(col, #line)
  local character
  if encoding == "utf-8" then
    character = col
  elseif has_011 then
    character = vim.str_utfindex(line, encoding, col, false)
  else
    local utf32, utf16 = vim.str_utfindex(line, col)
    character = encoding == "utf-16" and utf16 or utf32
  end
  return { line = row, character = character }
end

--- The byte column of LSP column `character` in `line`, clamped to the line.
function M.byte_col(line, character, encoding)
  local col
  if encoding == "utf-8" then
    col = character
  elseif has_011 then
    col = vim.str_byteindex(line, encoding, character, false)
  else
    local ok, c = pcall(vim.str_byteindex, line, character, encoding == "utf-16") -- errors past the end
    col = ok and c or #line
  end
  return math.min(col, #line)
end

--- The 0-based (row, byte column) of an LSP position, clamped to the buffer.
---@param pos lsp.Position
---@return integer row, integer col
function M.buf_pos(buf, pos, encoding)
  local last = vim.api.nvim_buf_line_count(buf) - 1
  if pos.line > last then
    return last, #line_of(buf, last)
  end
  return pos.line, M.byte_col(line_of(buf, pos.line), pos.character, encoding)
end

--- Run a server command (workspace/executeCommand); `handler(err, result)` gets the answer.
function M.exec_cmd(client, command, buf, handler)
  local params = { command = command.command, arguments = command.arguments }
  return M.request(client, "workspace/executeCommand", params, handler, buf)
end

return M

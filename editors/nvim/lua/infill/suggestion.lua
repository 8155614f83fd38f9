--- Suggestions while typing: Neovim 0.12's vim.lsp.inline_completion where it exists, the plugin's
--- ghost renderer (infill.ghost) otherwise or when `ghost.force` is set; and the insert-mode keymaps,
--- which do the key's usual job when nothing is shown.

local ghost = require("infill.ghost")

local M = {}

---@type table<integer, "native"|"ghost">
local mode = {}

local native = vim.lsp.inline_completion

--- Which renderer `opts` asks for on this Neovim.
---@param opts infill.Config
---@return "native"|"ghost"
function M.renderer(opts)
  return (native and not opts.ghost.force) and "native" or "ghost"
end

--- Accept the suggestion in the current buffer; false when none is shown.
function M.accept()
  local buf = vim.api.nvim_get_current_buf()
  if mode[buf] == "ghost" then
    return ghost.accept(buf)
  end
  return mode[buf] == "native" and native.get({ bufnr = buf }) or false
end

--- Hide the suggestion; false when none is shown.
function M.dismiss()
  local buf = vim.api.nvim_get_current_buf()
  if mode[buf] == "ghost" then
    return ghost.dismiss(buf)
  end
  -- 0.12 has no public "dismiss": accepting with a handler that does nothing hides the item.
  return mode[buf] == "native" and native.get({ bufnr = buf, on_accept = function() end }) or false
end

--- Show the next (`count` 1) or previous (-1) suggestion.
function M.select(count)
  local buf = vim.api.nvim_get_current_buf()
  if mode[buf] == "ghost" then
    return ghost.select(buf, count)
  end
  if mode[buf] == "native" then
    native.select({ bufnr = buf, count = count })
  end
end

--- Ask now. The built-in client asks by itself on InsertEnter and cursor moves and has no way to ask
--- explicitly, so this only acts with the ghost renderer.
function M.suggest()
  local buf = vim.api.nvim_get_current_buf()
  if mode[buf] == "ghost" then
    ghost.request(buf, true)
  end
end

---@param buf integer
---@param opts infill.Config
local function set_keymaps(buf, opts)
  local keys = opts.keymaps
  local function map(lhs, fn, desc, fallback)
    if not lhs then
      return
    end
    vim.keymap.set("i", lhs, function()
      if fn() then
        return ""
      end
      return fallback and lhs or ""
    end, { buffer = buf, expr = true, silent = true, desc = "infill: " .. desc })
  end
  map(keys.accept, M.accept, "accept the suggestion", true)
  map(keys.dismiss, M.dismiss, "dismiss the suggestion", true)
  map(keys.next, function() M.select(1) return true end, "next suggestion")
  map(keys.prev, function() M.select(-1) return true end, "previous suggestion")
  if M.renderer(opts) == "ghost" then
    map(keys.suggest, function() M.suggest() return true end, "suggest now")
  end
end

--- Turn suggestions on for a buffer the infill client attached to.
---@param buf integer
---@param opts infill.Config
function M.attach(buf, opts)
  if not opts.inline or mode[buf] then
    return
  end
  mode[buf] = M.renderer(opts)
  if mode[buf] == "native" then
    native.enable(true, { bufnr = buf })
  else
    ghost.attach(buf, opts)
  end
  set_keymaps(buf, opts)
end

function M.detach(buf)
  if mode[buf] == "ghost" then
    ghost.detach(buf)
  end
  mode[buf] = nil
end

---@return "native"|"ghost"|nil
function M.mode(buf)
  return mode[buf or vim.api.nvim_get_current_buf()]
end

return M

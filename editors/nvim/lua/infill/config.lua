--- Options of `require("infill").setup{}`: the defaults, their validation and the merged result.
---
--- Every option is optional. `settings` is passed to the language server untouched (as
--- initializationOptions and as section "infill" of workspace/configuration); the server checks it and
--- reports bad values in its log (`:LspLog`).

---@class (exact) infill.KeymapConfig
---@field accept string|false        accept the suggestion; the key does its usual job when none is shown
---@field next string|false          next suggestion
---@field prev string|false          previous suggestion
---@field dismiss string|false       hide the suggestion; the key does its usual job when none is shown
---@field suggest string|false       ask now, without waiting for typing (fallback renderer only)

---@class (exact) infill.GhostConfig
---@field force boolean              use the plugin's own renderer even where vim.lsp.inline_completion exists
---@field hl_group string            highlight of the ghost text

---@class (exact) infill.Config
---@field cmd string[]               the language server command
---@field filetypes string[]         filetypes the server attaches to
---@field extra_filetypes string[]   more filetypes, added to `filetypes`
---@field root_markers string[]      files that mark a project root (the file's folder otherwise)
---@field settings table             server settings: model, daemon, debounce, quality, enable, maxSteps, ...
---@field inline boolean             show suggestions while typing
---@field keymaps infill.KeymapConfig  (false: none at all)
---@field ghost infill.GhostConfig

local M = {}

---@type infill.Config
M.default = {
  cmd = { "infill", "lsp" }, -- e.g. { "python", "-m", "infill", "lsp", "--embedded" }
  filetypes = { "python", "javascript", "typescript", "typescriptreact", "go", "rust", "java", "c", "cpp", "lua" },
  extra_filetypes = {},
  root_markers = { ".git", "pyproject.toml", "package.json", "go.mod", "Cargo.toml", "pom.xml", "Makefile" },
  settings = {}, -- e.g. { quality = "fast", maxSteps = 16, enable = { lua = false } }; model: $INFILL_MODEL
  inline = true,
  keymaps = {
    accept = "<Tab>",
    next = "<M-]>",
    prev = "<M-[>",
    dismiss = "<C-]>",
    suggest = "<M-\\>",
  },
  ghost = {
    force = false,
    hl_group = "InfillGhost", -- linked to ComplHint (0.12) or Comment unless you define it
  },
}

local function is_key(v)
  return v == false or type(v) == "string"
end

local function list_of_strings(v)
  if type(v) ~= "table" or not vim.islist(v) then
    return false
  end
  for _, s in ipairs(v) do
    if type(s) ~= "string" then
      return false
    end
  end
  return true
end

-- option path -> { check, what it must be }; a hand-rolled check, since vim.validate's signature
-- changed between 0.10 and 0.11.
local checks = {
  { "cmd", function(v) return list_of_strings(v) and #v > 0 end, "a non-empty list of strings" },
  { "filetypes", list_of_strings, "a list of filetypes" },
  { "extra_filetypes", list_of_strings, "a list of filetypes" },
  { "root_markers", list_of_strings, "a list of file names" },
  { "settings", function(v) return type(v) == "table" end, "a table" },
  { "inline", function(v) return type(v) == "boolean" end, "true or false" },
  { "keymaps", function(v) return type(v) == "table" end, "a table of keys, or false" },
  { "ghost", function(v) return type(v) == "table" end, "a table" },
  { "keymaps.accept", is_key, "a key or false" },
  { "keymaps.next", is_key, "a key or false" },
  { "keymaps.prev", is_key, "a key or false" },
  { "keymaps.dismiss", is_key, "a key or false" },
  { "keymaps.suggest", is_key, "a key or false" },
  { "ghost.force", function(v) return type(v) == "boolean" end, "true or false" },
  { "ghost.hl_group", function(v) return type(v) == "string" and v ~= "" end, "a highlight group name" },
}

---@param opts infill.Config
---@return boolean ok, string? problem
function M.validate(opts)
  for _, check in ipairs(checks) do
    local path, ok, what = check[1], check[2], check[3]
    local value = vim.tbl_get(opts, unpack(vim.split(path, ".", { plain = true })))
    if not ok(value) then
      return false, ("%s: expected %s, got %s"):format(path, what, vim.inspect(value))
    end
  end
  for _, section in ipairs({ "", "keymaps", "ghost" }) do
    local given = section == "" and opts or opts[section]
    local known = section == "" and M.default or M.default[section]
    for k in pairs(type(given) == "table" and given or {}) do
      if known[k] == nil then
        return false, ("unknown option %q"):format(section == "" and k or section .. "." .. k)
      end
    end
  end
  return true
end

--- The defaults overridden by `opts`; lists (cmd, filetypes, ...) are replaced, not merged.
---@param opts? table
---@return infill.Config
function M.merge(opts)
  opts = vim.deepcopy(opts or {})
  if opts.keymaps == false then -- no keymaps at all
    opts.keymaps = { accept = false, next = false, prev = false, dismiss = false, suggest = false }
  end
  local merged = vim.tbl_deep_extend("force", vim.deepcopy(M.default), opts)
  local ok, problem = M.validate(merged)
  if not ok then
    error(("infill.setup: %s"):format(problem), 0)
  end
  return merged
end

--- Filetypes the server attaches to: `filetypes` plus `extra_filetypes`.
---@param opts infill.Config
---@return string[]
function M.all_filetypes(opts)
  local out = vim.deepcopy(opts.filetypes)
  for _, ft in ipairs(opts.extra_filetypes) do
    if not vim.list_contains(out, ft) then
      table.insert(out, ft)
    end
  end
  return out
end

return M

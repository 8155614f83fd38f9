--- infill.nvim: code infilling with text-diffusion models, through the `infill lsp` language server.
---
---   require("infill").setup{}                 -- `infill lsp` from PATH, defaults from infill.config
---   :InfillFix        regenerate the syntax block under the cursor (or the selected lines)
---   :'<,'>InfillFill  regenerate the selected range
---   :InfillStatus     the server's counters, backend and settings
---   :checkhealth infill
---
--- The plugin only renders, accepts and dismisses; what to suggest is the server's business.

local M = {}

---@type infill.Config?
M.options = nil

local function on_attach(ev)
  local client = vim.lsp.get_client_by_id(ev.data.client_id)
  if client and client.name == require("infill.lsp").name then
    require("infill.suggestion").attach(ev.buf, M.options)
  end
end

local function on_detach(ev)
  local client = vim.lsp.get_client_by_id(ev.data.client_id)
  if client and client.name == require("infill.lsp").name then
    require("infill.suggestion").detach(ev.buf)
  end
end

local function commands()
  local actions = require("infill.actions")
  local function range_cmd(what)
    return function(cmd)
      actions.run(what, cmd.range > 0 and { line1 = cmd.line1, line2 = cmd.line2 } or nil)
    end
  end
  vim.api.nvim_create_user_command("InfillFix", range_cmd("fix"),
    { range = true, desc = "infill: regenerate the block under the cursor (or in the range)" })
  vim.api.nvim_create_user_command("InfillFill", function(cmd)
    if cmd.range == 0 then
      return vim.notify("infill: :InfillFill needs a range, e.g. :'<,'>InfillFill", vim.log.levels.WARN)
    end
    range_cmd("fill")(cmd)
  end, { range = true, desc = "infill: regenerate the lines or characters of the range" })
  vim.api.nvim_create_user_command("InfillStatus", function()
    actions.status()
  end, { desc = "infill: the language server's status" })
end

--- Start the language server for the configured filetypes, with suggestions, keymaps and commands.
---@param opts? table see infill.config (every option is optional)
function M.setup(opts)
  M.options = require("infill.config").merge(opts)
  local exe = M.options.cmd[1]
  if vim.fn.executable(exe) == 0 then -- vim.lsp would only write it to its log
    vim.notify(("infill: `%s` is not executable; set `cmd` in setup() (:checkhealth infill)"):format(exe),
      vim.log.levels.WARN)
  end
  vim.api.nvim_set_hl(0, "InfillGhost", { link = vim.fn.hlexists("ComplHint") == 1 and "ComplHint" or "Comment",
                                         default = true })
  local group = vim.api.nvim_create_augroup("infill", { clear = true })
  vim.api.nvim_create_autocmd("LspAttach", { group = group, callback = on_attach })
  vim.api.nvim_create_autocmd("LspDetach", { group = group, callback = on_detach })
  commands()
  require("infill.lsp").enable(M.options)
  -- clients already attached before setup (a second setup call, lazy loading)
  for _, client in ipairs(vim.lsp.get_clients({ name = require("infill.lsp").name })) do
    for buf in pairs(client.attached_buffers) do
      on_attach({ buf = buf, data = { client_id = client.id } })
    end
  end
end

--- Change server settings at run time (workspace/didChangeConfiguration), e.g. { quality = "fast" }.
---@param settings table
function M.configure(settings)
  assert(M.options, "call require('infill').setup() first")
  M.options.settings = vim.tbl_deep_extend("force", M.options.settings, settings)
  require("infill.lsp").configure(M.options)
end

-- Lua API for custom mappings and statuslines.
M.accept = function() return require("infill.suggestion").accept() end
M.dismiss = function() return require("infill.suggestion").dismiss() end
M.next = function() return require("infill.suggestion").select(1) end
M.prev = function() return require("infill.suggestion").select(-1) end
M.suggest = function() return require("infill.suggestion").suggest() end
M.fix = function(opts) return require("infill.actions").run("fix", opts) end
M.fill = function(opts) return require("infill.actions").run("fill", opts) end
M.status = function(callback) return require("infill.actions").status(callback) end
--- A short state for a statusline ("infill: MODEL" when ready, "infill: loading", ...); `User InfillState` fires on changes.
M.statusline = function() return require("infill.state").statusline() end

return M

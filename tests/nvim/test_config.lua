-- setup() options: defaults, replacement of lists, errors that name the option; no server needed.
local H = require("harness")
local config = require("infill.config")

H.run({
  { "the defaults need no option", function()
    local opts = config.merge()
    H.eq({ "infill", "lsp" }, opts.cmd, "cmd")
    H.eq("<Tab>", opts.keymaps.accept, "accept key")
    H.truthy(vim.list_contains(config.all_filetypes(opts), "python"), "python is on")
  end },

  { "lists are replaced, extra_filetypes adds, keymaps = false turns every key off", function()
    local opts = config.merge({ filetypes = { "ruby" }, extra_filetypes = { "zig", "ruby" }, keymaps = false })
    H.eq({ "ruby", "zig" }, config.all_filetypes(opts), "filetypes")
    for name, key in pairs(opts.keymaps) do
      H.eq(false, key, "keymaps." .. name)
    end
    H.eq("<C-]>", config.merge({ keymaps = { accept = "<C-y>" } }).keymaps.dismiss, "the other keys stay")
  end },

  { "the server is told not to debounce again when 0.12's client shows the suggestions", function()
    local lsp = require("infill.lsp")
    local native = vim.lsp.inline_completion ~= nil
    H.eq(native and 0 or nil, lsp.server_settings(config.merge()).debounce, "debounce by default")
    H.eq(nil, lsp.server_settings(config.merge({ ghost = { force = true } })).debounce, "with the ghost renderer")
    H.eq(80, lsp.server_settings(config.merge({ settings = { debounce = 80 } })).debounce, "when set")
    H.eq("{}", vim.json.encode(lsp.server_settings(config.merge({ ghost = { force = true } }))), "no settings")
  end },

  { "bad options are errors that name the option", function()
    for _, case in ipairs({
      { { cmd = "infill" }, "cmd: expected a non-empty list of strings" },
      { { colour = 1 }, 'unknown option "colour"' },
      { { keymaps = { acept = "<Tab>" } }, 'unknown option "keymaps.acept"' },
      { { keymaps = { accept = 1 } }, "keymaps.accept: expected a key or false" },
      { { ghost = { force = "yes" } }, "ghost.force: expected true or false" },
      { { settings = 3 }, "settings: expected a table" },
    }) do
      local ok, err = pcall(config.merge, case[1])
      H.truthy(not ok and err:find(case[2], 1, true), ("%s -> %s"):format(vim.inspect(case[1]), tostring(err)))
    end
  end },

  { "setup() says so when the command is not executable", function()
    local shown = H.notifications(function() require("infill").setup({ cmd = { "infill-not-installed-here" } }) end)
    H.truthy(shown[1] and shown[1]:find("`infill-not-installed-here` is not executable", 1, true), "a warning")
  end },
})

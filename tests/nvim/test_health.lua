-- :checkhealth infill with a server that starts: every check OK, nothing in error.
local H = require("harness")

require("infill").setup({ cmd = H.cmd(), settings = H.settings })

H.run({
  { ":checkhealth infill reports OK", function()
    vim.cmd("checkhealth infill")
    local report
    H.wait(90000, function()
      local lines = H.lines(0)
      local text = table.concat(lines, "\n")
      if text:find("model:", 1, true) or text:find("ERROR", 1, true) then
        report = lines
      end
      return report
    end, "the health report")
    H.log("     " .. table.concat(report, "\n     "))
    local text = table.concat(report, "\n")
    H.truthy(not text:find("ERROR", 1, true), "no error in the report")
    local renderer = vim.lsp.inline_completion and "vim.lsp.inline_completion" or "ghost-text renderer"
    for _, expected in ipairs({ "OK Neovim ", renderer, "OK server command:", "OK the server answers infill/status",
                                "OK model: " .. vim.env.INFILL_MODEL, "OK state: ready: DiffusionGemma " }) do
      H.truthy(text:find(expected, 1, true), ("%q in the report"):format(expected))
    end
  end },

  { ":checkhealth infill says what to do when the command is missing", function()
    require("infill").setup({ cmd = { "infill-not-installed-here", "lsp" } })
    vim.cmd("checkhealth infill")
    local text = H.wait(30000, function()
      local t = table.concat(H.lines(0), "\n")
      return t:find("ERROR", 1, true) and t
    end, "the health report")
    H.truthy(text:find("`infill-not-installed-here` is not on PATH", 1, true), "the missing command named")
    H.truthy(text:find('cmd = {', 1, true), "how to set the command")
  end },
})

-- :InfillFix, :InfillFill and :InfillStatus against the real server, with the edits resolved lazily
-- (codeAction/resolve), as Neovim 0.10+ asks for them.
local H = require("harness")

require("infill").setup({ cmd = H.cmd(), settings = H.settings })

local buf, client

--- The outcome is an applied edit, and the buffer is `before` with exactly that edit: the rest is untouched.
local function assert_applied(before, outcome)
  H.truthy(outcome.applied, "the edit was not applied: " .. tostring(outcome.error))
  H.log("     edit " .. H.show_edit(outcome.range, outcome.text))
  H.eq(H.splice(before, outcome.range, outcome.text, client.offset_encoding), H.lines(buf), "the buffer")
end

H.run({
  { "the server attaches to a Python file", function()
    buf, client = H.open("actions.py")
  end },

  { ":InfillFix replaces the block under the cursor and nothing else", function()
    local before = H.lines(buf)
    vim.api.nvim_win_set_cursor(0, { 2, 6 }) -- on `total = a + b`
    local outcome = H.outcome(function() vim.cmd("InfillFix") end)
    assert_applied(before, outcome)
    local r = outcome.range -- a block of `def add` (lines 0-2) around the cursor
    H.truthy(r.start.line <= 1 and r["end"].line >= 1 and r["end"].line <= 2, "the block lies within def add")
  end },

  { ":'<,'>InfillFill regenerates the selected lines only", function()
    vim.api.nvim_buf_set_lines(buf, 0, -1, false, H.sample)
    local before = H.lines(buf)
    vim.api.nvim_win_set_cursor(0, { 2, 0 })
    local outcome = H.outcome(function() H.feed("Vj:InfillFill<CR>") end)
    assert_applied(before, outcome)
    H.eq({ start = { line = 1, character = 0 }, ["end"] = { line = 2, character = #"    return total" } },
      outcome.range, "the range: the two selected lines, their last line break excluded")
  end },

  { ":'<,'>InfillFill over a character-wise selection replaces exactly those characters", function()
    vim.api.nvim_buf_set_lines(buf, 0, -1, false, H.sample)
    local before = H.lines(buf)
    vim.api.nvim_win_set_cursor(0, { 2, #"    total = " }) -- select `a + b`
    local outcome = H.outcome(function() H.feed("v4l:InfillFill<CR>") end)
    assert_applied(before, outcome)
    H.eq({ start = { line = 1, character = 12 }, ["end"] = { line = 1, character = 17 } }, outcome.range,
      "the range: the selected characters")
  end },

  { ":InfillFill without a range says so and does nothing", function()
    local before = H.lines(buf)
    local shown = H.notifications(function() vim.cmd("InfillFill") end)
    H.sleep(100)
    H.eq(before, H.lines(buf), "the buffer")
    H.truthy(shown[1] and shown[1]:find("needs a range", 1, true), "a warning")
  end },

  { "infill/status counts the requests", function()
    local status
    require("infill").status(function(s) status = s end)
    H.wait(10000, function() return status end, "infill/status")
    H.eq("embedded", status.backend.backend, "backend")
    H.eq(vim.env.INFILL_MODEL, status.settings.model, "model")
    H.eq(2, status.settings.maxSteps, "maxSteps from the plugin's settings")
    H.truthy(status.model_calls >= 3, "three model calls")
    local shown = H.notifications(function() vim.cmd("InfillStatus") end)
    H.wait(10000, function() return shown[1] end, "the status to show")
    H.truthy(shown[1]:find("model_calls", 1, true), "the status lists the counters")
  end },
})

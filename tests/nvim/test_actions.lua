-- :InfillFix, :InfillFill and :InfillStatus against the real server and its model daemon, with the edits resolved
-- lazily (codeAction/resolve), as Neovim 0.10+ asks for them. The tiny random model writes noise: an edit that
-- would not compile is refused (the buffer untouched, the reason shown), one inside a comment always parses.
local H = require("harness")

require("infill").setup({ cmd = H.cmd(), settings = H.settings })

local SAMPLE = {
  "def add(a, b):",
  "    total = a + b  # the sum",
  "    return total",
  "",
  "",
  "def main():",
  "    print(add(1, 2))",
}

local buf, client

--- The outcome is an applied edit, and the buffer is `before` with exactly that edit: the rest is untouched.
local function assert_applied(before, outcome)
  H.truthy(outcome.applied, "the edit was not applied: " .. tostring(outcome.error))
  H.log("     edit " .. H.show_edit(outcome.range, outcome.text))
  H.eq(H.splice(before, outcome.range, outcome.text, client.offset_encoding), H.lines(buf), "the buffer")
end

--- The outcome is a refusal: nothing changed, and the user was told why.
local function assert_refused(before, outcome, shown)
  H.truthy(not outcome.applied, "applied")
  H.log("     refused: " .. tostring(outcome.error))
  H.truthy(outcome.error:find("not applied: the model's code would ", 1, true), "the reason: " .. tostring(outcome.error))
  H.eq(before, H.lines(buf), "the buffer")
  H.truthy(vim.iter(shown):any(function(m) return m:find(outcome.error, 1, true) ~= nil end), "the reason is shown")
end

--- The progress echoed while `fn`'s action ran: "infill: LABEL… N s", cleared at the end.
local function progress_of(label, since)
  local seen, cleared = false, false
  for _, e in ipairs(H.echoed) do
    if e.at >= since and e.text:find("infill: " .. label .. "… %d+ s") then
      seen = true
    elseif seen and e.text == "" then
      cleared = true
    end
  end
  return seen, cleared
end

H.run({
  { "the server attaches and says when its model is ready", function()
    local states = {}
    vim.api.nvim_create_autocmd("User", { pattern = "InfillState", callback = function(ev)
      table.insert(states, ev.data.state)
    end })
    buf, client = H.open("actions.py", SAMPLE)
    H.wait(60000, function() return require("infill.state").current and require("infill.state").current.state == "ready" end,
      "the ready state")
    local line = require("infill").statusline()
    H.log("     statusline: " .. line .. "; states " .. table.concat(states, ", "))
    H.truthy(line:find("^infill: DiffusionGemma ") and not line:find("tiny"), "the statusline names the model")
  end },

  { ":InfillFix shows progress, then applies an edit of the block or refuses code that would not compile", function()
    local before = H.lines(buf)
    vim.api.nvim_win_set_cursor(0, { 2, 6 }) -- on `total = a + b`
    local since = vim.uv.now()
    local outcome
    local shown = H.notifications(function() outcome = H.outcome(function() vim.cmd("InfillFix") end) end)
    local seen, cleared = progress_of("fixing the block", since)
    H.truthy(seen and cleared, "progress echoed while the model worked, then cleared")
    if outcome.applied then
      assert_applied(before, outcome)
      local r = outcome.range -- a block of `def add` (lines 0-2) around the cursor
      H.truthy(r.start.line <= 1 and r["end"].line >= 1 and r["end"].line <= 2, "the block lies within def add")
    else
      assert_refused(before, outcome, shown)
    end
  end },

  { ":'<,'>InfillFill over words of a comment replaces exactly them, and gv selects the new text", function()
    vim.api.nvim_buf_set_lines(buf, 0, -1, false, SAMPLE)
    local before = H.lines(buf)
    local col = SAMPLE[2]:find("the sum", 1, true) - 1
    vim.api.nvim_win_set_cursor(0, { 2, col }) -- select `the sum`
    local outcome = H.outcome(function() H.feed("v6l:InfillFill<CR>") end)
    assert_applied(before, outcome)
    H.eq({ start = { line = 1, character = col }, ["end"] = { line = 1, character = col + 7 } }, outcome.range,
      "the range: the selected characters")
    H.truthy(not outcome.text:find("\n"), "one line back for a selection within one line")
    local s, e = vim.api.nvim_buf_get_mark(buf, "<"), vim.api.nvim_buf_get_mark(buf, ">")
    H.eq({ { 2, col }, { 2, col + #outcome.text - 1 } }, { s, e }, "'< and '> around the new text")
  end },

  { ":'<,'>InfillFill over whole lines: the lines, or a refusal", function()
    vim.api.nvim_buf_set_lines(buf, 0, -1, false, SAMPLE)
    local before = H.lines(buf)
    vim.api.nvim_win_set_cursor(0, { 2, 0 })
    local outcome
    local shown = H.notifications(function() outcome = H.outcome(function() H.feed("Vj:InfillFill<CR>") end) end)
    if outcome.applied then
      assert_applied(before, outcome)
      H.eq({ start = { line = 1, character = 0 }, ["end"] = { line = 2, character = #"    return total" } },
        outcome.range, "the range: the two selected lines, their last line break excluded")
    else
      assert_refused(before, outcome, shown)
    end
  end },

  { "a deadline that passes is named, with the setting to change", function()
    vim.api.nvim_buf_set_lines(buf, 0, -1, false, SAMPLE)
    require("infill").configure({ deadline = 1, maxSteps = 1024, lengths = { 64 } })
    vim.api.nvim_win_set_cursor(0, { 2, 6 })
    local outcome = H.outcome(function() vim.cmd("InfillFix") end)
    require("infill").configure(H.settings)
    H.truthy(not outcome.applied, "applied")
    H.truthy(outcome.error:find("no result within the deadline of 1 ms: raise the `deadline` setting", 1, true),
      "the reason: " .. tostring(outcome.error))
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
    H.eq("daemon", status.backend.backend, "backend")
    H.eq(vim.env.INFILL_TEST_DAEMON, status.backend.address, "the daemon's address from the settings")
    H.eq(vim.env.INFILL_MODEL, status.settings.model, "model")
    H.eq(2, status.settings.maxSteps, "maxSteps from the plugin's settings")
    H.truthy(status.model_calls >= 4, "four model calls")
    local shown = H.notifications(function() vim.cmd("InfillStatus") end)
    H.wait(10000, function() return shown[1] end, "the status to show")
    H.truthy(shown[1]:find("model_calls", 1, true), "the status lists the counters")
  end },
})

-- The fallback renderer (for Neovim 0.10-0.11; forced on where 0.12's client exists); and a client that cannot resolve code
-- actions, so that :InfillFill goes through the server's infill.fillRange command and workspace/applyEdit.
local H = require("harness")

require("infill").setup({ cmd = H.cmd(), settings = H.settings, ghost = { force = true } })
vim.lsp.config("infill", { -- no lazy edits: the server answers with the command instead
  capabilities = { textDocument = { codeAction = { resolveSupport = { properties = { "command" } } } } },
})

local ghost = require("infill.ghost")
local buf, client, answers

local function marks()
  return vim.api.nvim_buf_get_extmarks(buf, ghost.namespace, 0, -1, { details = true })
end

--- Enter insert mode at (row, col) and wait for the ghost text; returns the extmark and the item.
local function show_at(row, col)
  vim.api.nvim_win_set_cursor(0, { row, col })
  H.feed("i")
  local mark = H.wait(30000, function() return marks()[1] end, "the ghost text")
  return mark, H.last_item(answers)
end

H.run({
  { "the ghost renderer is used when forced", function()
    buf, client = H.open("ghost.py")
    answers = H.record(client, "textDocument/inlineCompletion")
    H.eq("ghost", require("infill.suggestion").mode(buf), "renderer")
    if vim.lsp.inline_completion then -- 0.12
      H.truthy(not vim.lsp.inline_completion.is_enabled({ bufnr = buf }), "the built-in client stays off")
    end
  end },

  { "the item shows as an extmark at the cursor and <Tab> inserts exactly its text", function()
    local before = H.lines(buf)
    local mark, item = show_at(2, #"    total = ")
    H.log("     item " .. H.show_edit(item.range, item.insertText))
    local row, col, details = mark[2], mark[3], mark[4]
    H.eq({ 1, #"    total = " }, { row, col }, "the extmark's position")
    H.eq("inline", details.virt_text_pos, "virt_text_pos")
    local item_lines = vim.split(item.insertText, "\n", { plain = true })
    H.eq(#item_lines - 1, #(details.virt_lines or {}), "virt_lines for the lines after the first")
    H.truthy(vim.startswith(item_lines[1], details.virt_text[1][1]), "the first line is shown inline")
    H.eq(before, H.lines(buf), "the buffer while the ghost text shows")
    local expected = H.splice(before, item.range, item.insertText, client.offset_encoding)
    H.feed("<Tab>")
    H.wait(5000, function() return not vim.deep_equal(before, H.lines(buf)) end, "the buffer to change")
    H.eq(expected, H.lines(buf), "the buffer after <Tab>")
    local row_after = 2 + #item_lines - 1
    local col_after = (#item_lines == 1 and #"    total = " or 0) + #item_lines[#item_lines]
    H.eq({ row_after, col_after }, vim.api.nvim_win_get_cursor(0), "the cursor after the inserted text")
    H.feed("<Esc>")
  end },

  { "a multi-line item that swallows a closer: virt_text, virt_lines, and exact insertion", function()
    vim.api.nvim_buf_set_lines(buf, 0, -1, false, H.sample)
    local before = H.lines(buf)
    local col = #"    print(add(1, 2"
    local item = { insertText = ",\n        3)", range = { start = { line = 6, character = col },
                                                       ["end"] = { line = 6, character = col + 1 } } }
    H.stub(client, "textDocument/inlineCompletion", { items = { item } })
    local mark = show_at(7, col)
    H.eq({ 6, col }, { mark[2], mark[3] }, "the extmark's position")
    H.eq({ { ",", "InfillGhost" } }, mark[4].virt_text, "the first line, inline")
    H.eq({ { { "        3", "InfillGhost" } } }, mark[4].virt_lines, "the next line; the buffer's `)` stays")
    H.feed("<Tab>")
    H.wait(5000, function() return not vim.deep_equal(before, H.lines(buf)) end, "the buffer to change")
    H.eq(H.splice(before, item.range, item.insertText, "utf-16"), H.lines(buf), "the buffer after <Tab>")
    H.eq("    print(add(1, 2,", H.lines(buf)[7], "line 7")
    H.eq("        3))", H.lines(buf)[8], "line 8")
    H.eq({ 8, #"        3)" }, vim.api.nvim_win_get_cursor(0), "the cursor after the inserted text")
    H.feed("<Esc>")
  end },

  { "moving the cursor and leaving insert mode clear it", function()
    vim.api.nvim_buf_set_lines(buf, 0, -1, false, H.sample)
    show_at(7, #"    print(")
    H.feed("<Left>")
    for _, m in ipairs(marks()) do -- a new item may come for the new spot, never the old one
      H.eq({ 6, #"    print" }, { m[2], m[3] }, "an extmark left after the cursor moved")
    end
    H.wait(30000, function() return marks()[1] end, "the ghost text at the new spot")
    H.feed("<Esc>")
    H.eq({}, marks(), "extmarks after InsertLeave")
  end },

  { "<C-]> dismisses, and the buffer is untouched", function()
    vim.api.nvim_buf_set_lines(buf, 0, -1, false, H.sample)
    show_at(3, #"    return ")
    H.feed("<C-]>")
    H.eq({}, marks(), "extmarks after <C-]>")
    H.eq(H.sample, H.lines(buf), "the buffer")
    H.feed("<Esc>")
  end },

  { ":InfillFill through infill.fillRange and workspace/applyEdit; gv selects the new text", function()
    local lines = vim.deepcopy(H.sample)
    lines[2] = "    total = a + b  # the sum" -- words of a comment: anything on one line parses there
    vim.api.nvim_buf_set_lines(buf, 0, -1, false, lines)
    local col = lines[2]:find("the sum", 1, true) - 1
    vim.api.nvim_win_set_cursor(0, { 2, col })
    local actions = H.record(client, "textDocument/codeAction")
    local outcome = H.outcome(function() H.feed("v6l:InfillFill<CR>") end)
    local action = actions[#actions].result[1]
    H.eq("infill.fillRange", action.command and action.command.command, "the action's command")
    H.truthy(outcome.applied, "not applied: " .. tostring(outcome.error))
    H.log("     edit " .. H.show_edit(outcome.range, outcome.text))
    H.eq(H.splice(lines, outcome.range, outcome.text, client.offset_encoding), H.lines(buf), "the buffer")
    local s, e = vim.api.nvim_buf_get_mark(buf, "<"), vim.api.nvim_buf_get_mark(buf, ">")
    H.eq({ { 2, col }, { 2, col + #outcome.text - 1 } }, { s, e }, "'< and '> around the new text")
  end },
})

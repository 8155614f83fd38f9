-- Suggestions through Neovim 0.12's own vim.lsp.inline_completion, driven by the plugin's keymaps.
local H = require("harness")

require("infill").setup({ cmd = H.cmd(), settings = H.settings })

local ns = vim.api.nvim_create_namespace("nvim.lsp.inline_completion")

local function shown(buf)
  return #vim.api.nvim_buf_get_extmarks(buf, ns, 0, -1, {}) > 0
end

local buf, client, answers

H.run({
  { "the plugin uses the built-in client on 0.12", function()
    H.truthy(vim.lsp.inline_completion, "this Neovim has no vim.lsp.inline_completion")
    buf, client = H.open("inline.py")
    answers = H.record(client, "textDocument/inlineCompletion")
    H.eq("native", require("infill.suggestion").mode(buf), "renderer")
    H.truthy(vim.lsp.inline_completion.is_enabled({ bufnr = buf }), "inline completion enabled in the buffer")
  end },

  { "an item shows at the cursor and <Tab> inserts exactly its text", function()
    local before = H.lines(buf)
    vim.api.nvim_win_set_cursor(0, { 2, #"    total = " })
    H.feed("i")
    H.wait(30000, function() return shown(buf) end, "the suggestion to show")
    local item = H.truthy(H.last_item(answers), "an item")
    H.eq(before, H.lines(buf), "the buffer while the suggestion shows")
    local expected = H.splice(before, item.range, item.insertText, client.offset_encoding)
    H.log("     item " .. H.show_edit(item.range, item.insertText))
    H.feed("<Tab>")
    H.wait(5000, function() return not vim.deep_equal(before, H.lines(buf)) end, "the buffer to change")
    H.eq(expected, H.lines(buf), "the buffer after <Tab>")
    local text_lines = vim.split(item.insertText, "\n", { plain = true })
    local row = 2 + #text_lines - 1
    local col = (#text_lines == 1 and #"    total = " or 0) + #text_lines[#text_lines]
    H.eq({ row, col }, vim.api.nvim_win_get_cursor(0), "the cursor after the inserted text")
    H.feed("<Esc>")
  end },

  { "<C-]> dismisses the suggestion and leaves the buffer alone", function()
    vim.api.nvim_buf_set_lines(buf, 0, -1, false, H.sample)
    local before = H.lines(buf)
    vim.api.nvim_win_set_cursor(0, { 7, #"    print(" })
    H.feed("i")
    H.wait(30000, function() return shown(buf) end, "the suggestion to show")
    H.feed("<C-]>")
    H.wait(2000, function() return not shown(buf) end, "the suggestion to go")
    H.eq(before, H.lines(buf), "the buffer after <C-]>")
    H.feed("<Esc>")
  end },

  { "suggestions slower than the deadline say so once, naming the setting", function()
    vim.api.nvim_buf_set_lines(buf, 0, -1, false, H.sample)
    require("infill").configure({ deadline = 1, maxSteps = 1024, lengths = { 64 } })
    local shown = H.notifications(function()
      vim.api.nvim_win_set_cursor(0, { 3, #"    return" }) -- a spot no earlier test asked about (type-through)
      H.feed("i")
    end)
    local warning = H.wait(30000, function()
      return vim.iter(shown):find(function(m) return m:find("longer than the deadline of 1 ms", 1, true) end)
    end, "the warning")
    H.truthy(warning:find("settings = { deadline = ... }", 1, true), "how to change it in Neovim: " .. warning)
    H.eq("infill: slow", require("infill").statusline(), "the statusline")
    H.feed("<Esc>")
    require("infill").configure(H.settings)
  end },

  { "<Tab> inserts a tab when no suggestion is shown", function()
    require("infill").configure({ enable = { python = false } }) -- the server now answers nothing
    vim.api.nvim_buf_set_lines(buf, 0, -1, false, H.sample)
    vim.bo[buf].expandtab = false
    vim.bo[buf].softtabstop = 0
    local before = H.lines(buf)
    local n = #answers
    vim.api.nvim_win_set_cursor(0, { 4, 0 })
    H.feed("i")
    local answer = H.wait(30000, function()
      for i = n + 1, #answers do
        local a = answers[i]
        if a.result and a.params.position.line == 3 then
          return a
        end
      end
    end, "an answer at the empty line")
    H.eq(0, #(answer.result.items or answer.result), "items from a disabled language")
    H.truthy(not shown(buf), "nothing shown")
    H.feed("<Tab>")
    H.wait(2000, function() return H.lines(buf)[4] ~= "" end, "the line to change")
    local expected = vim.deepcopy(before)
    expected[4] = "\t"
    H.eq(expected, H.lines(buf), "the buffer after <Tab>")
    H.feed("<Esc>")
    require("infill").configure({ enable = { python = true } })
  end },
})

--- The fallback renderer, for Neovim 0.10 and 0.11 (no vim.lsp.inline_completion) or `ghost.force`.
---
--- It asks `textDocument/inlineCompletion` itself whenever the cursor or the text changes in insert
--- mode (the server debounces bursts of automatic requests; the previous request is cancelled here),
--- draws the item with one extmark (the first line as inline virt_text at the cursor, the others as
--- virt_lines below), and accepts it by writing exactly the item's insertText over the item's range.
--- It clears on InsertLeave, BufLeave and when the cursor leaves the spot the item was asked for.

local lsp = require("infill.lsp")

local M = {}

local ns = vim.api.nvim_create_namespace("infill.ghost")
local AUTOMATIC, INVOKED = 2, 1 -- lsp.InlineCompletionTriggerKind

---@class (private) infill.GhostState
---@field anchor? {row: integer, col: integer, tick: integer}  where the shown or pending item was asked for
---@field request? {client: vim.lsp.Client, id: integer}       the pending request
---@field items? table[]                                        lsp.InlineCompletionItem[]
---@field index integer
---@field client_id? integer

---@type table<integer, infill.GhostState>
local states = {}
local hl_group = "InfillGhost"

local function here(buf)
  local cursor = vim.api.nvim_win_get_cursor(0)
  return { row = cursor[1] - 1, col = cursor[2], tick = vim.api.nvim_buf_get_changedtick(buf) }
end

local function same(a, b)
  return a ~= nil and b ~= nil and a.row == b.row and a.col == b.col and a.tick == b.tick
end

local function insert_mode()
  return vim.api.nvim_get_mode().mode:sub(1, 1) == "i"
end

local function text_of(item)
  local t = item.insertText
  return type(t) == "table" and t.value or t
end

local function cancel(s)
  if s.request then
    pcall(lsp.cancel, s.request.client, s.request.id)
    s.request = nil
  end
end

--- Hide the item and forget it; `keep_anchor` stops the same spot from asking again (a dismissal).
function M.clear(buf, keep_anchor)
  local s = states[buf]
  if not s then
    return
  end
  cancel(s)
  s.items, s.index = nil, 1
  if not keep_anchor then
    s.anchor = nil
  end
  if vim.api.nvim_buf_is_valid(buf) then
    vim.api.nvim_buf_clear_namespace(buf, ns, 0, -1)
  end
end

---@return table? item, integer? client_id
function M.current(buf)
  local s = states[buf or vim.api.nvim_get_current_buf()]
  if s and s.items and s.items[s.index] then
    return s.items[s.index], s.client_id
  end
end

--- The item's replace range in buffer coordinates: start row/col, end row/col (byte columns).
local function buf_range(buf, item, client, anchor)
  if not item.range then
    return anchor.row, anchor.col, anchor.row, anchor.col
  end
  local sr, sc = lsp.buf_pos(buf, item.range.start, client.offset_encoding)
  local er, ec = lsp.buf_pos(buf, item.range["end"], client.offset_encoding)
  return sr, sc, er, ec
end

--- The text to draw at the cursor: the item minus what the buffer already shows around the cursor
--- (typed text before it when the range starts earlier, closers after it that the range swallows).
local function display_text(buf, text, anchor, sr, sc, er, ec)
  local line = vim.api.nvim_buf_get_lines(buf, anchor.row, anchor.row + 1, false)[1] or ""
  if sr == anchor.row and sc < anchor.col then
    local typed = line:sub(sc + 1, anchor.col)
    if text:sub(1, #typed) ~= typed then
      return nil -- the item does not continue what is typed: nothing sensible to draw
    end
    text = text:sub(#typed + 1)
  end
  if er == anchor.row and ec > anchor.col then
    local swallowed = line:sub(anchor.col + 1, ec)
    if text:sub(-#swallowed) == swallowed then
      text = text:sub(1, #text - #swallowed) -- the buffer's own closers stay visible after it
    end
  end
  return text
end

function M.show(buf)
  local s = states[buf]
  vim.api.nvim_buf_clear_namespace(buf, ns, 0, -1)
  local item = M.current(buf)
  local client = item and vim.lsp.get_client_by_id(s.client_id)
  if not item or not client then
    return
  end
  local anchor = s.anchor
  local text = display_text(buf, text_of(item), anchor, buf_range(buf, item, client, anchor))
  if not text or text == "" then
    return
  end
  local spaces = string.rep(" ", vim.bo[buf].tabstop)
  local lines = vim.split((text:gsub("\t", spaces)), "\n", { plain = true })
  local virt_text = { { lines[1], hl_group } }
  local virt_lines = {}
  for i = 2, #lines do
    virt_lines[#virt_lines + 1] = { { lines[i], hl_group } }
  end
  if #s.items > 1 then -- which of several, after the last line
    table.insert(virt_lines[#virt_lines] or virt_text, { (" (%d/%d)"):format(s.index, #s.items), "Comment" })
  end
  vim.api.nvim_buf_set_extmark(buf, ns, anchor.row, anchor.col, {
    virt_text = virt_text,
    virt_text_pos = "inline",
    virt_lines = #virt_lines > 0 and virt_lines or nil,
    hl_mode = "combine",
  })
end

--- Ask for an item at the cursor. `invoked`: asked explicitly (the server skips its debounce).
function M.request(buf, invoked)
  local s = states[buf]
  local client = lsp.client(buf)
  if not s or not client or vim.api.nvim_get_current_buf() ~= buf then
    return
  end
  M.clear(buf)
  local anchor = here(buf)
  s.anchor = anchor
  local params = vim.lsp.util.make_position_params(0, client.offset_encoding)
  params.context = { triggerKind = invoked and INVOKED or AUTOMATIC }
  local id
  local ok, rid = lsp.request(client, lsp.methods.inline, params, function(err, result)
    if not s.request or s.request.id ~= id then
      return -- superseded or cleared
    end
    s.request = nil
    if err or not result or not same(anchor, s.anchor) or not insert_mode()
      or vim.api.nvim_get_current_buf() ~= buf or not same(anchor, here(buf)) then
      return
    end
    local items = result.items or result
    if #items == 0 then
      return
    end
    s.items, s.index, s.client_id = items, 1, client.id
    M.show(buf)
  end, buf)
  if ok then
    id = rid
    s.request = { client = client, id = rid }
  end
end

--- Accept the shown item: its insertText over its range, the cursor after it. False when none is shown.
function M.accept(buf)
  buf = buf or vim.api.nvim_get_current_buf()
  local item, client_id = M.current(buf)
  local client = client_id and vim.lsp.get_client_by_id(client_id)
  if not item or not client then
    return false
  end
  local anchor = states[buf].anchor
  M.clear(buf, true)
  vim.schedule(function() -- may run from an <expr> mapping, where the buffer cannot change
    local sr, sc, er, ec = buf_range(buf, item, client, anchor)
    local text = item.insertText
    if type(text) == "table" and text.kind == "snippet" then
      vim.api.nvim_buf_set_text(buf, sr, sc, er, ec, { "" })
      vim.api.nvim_win_set_cursor(0, { sr + 1, sc })
      vim.snippet.expand(text.value)
    else
      local lines = vim.split(text_of(item), "\n", { plain = true })
      vim.api.nvim_buf_set_text(buf, sr, sc, er, ec, lines)
      local col = (#lines == 1 and sc or 0) + #lines[#lines]
      vim.api.nvim_win_set_cursor(0, { sr + #lines, col })
    end
    if item.command then
      lsp.exec_cmd(client, item.command, buf, function() end)
    end
  end)
  return true
end

--- Show the next (`count` > 0) or previous item.
function M.select(buf, count)
  local s = states[buf]
  if not s or not s.items or #s.items == 0 then
    return false
  end
  s.index = (s.index - 1 + count) % #s.items + 1
  M.show(buf)
  return true
end

--- Hide the shown item (or cancel the pending request); false when there was neither.
function M.dismiss(buf)
  local s = states[buf]
  if not s or not (s.items or s.request) then
    return false
  end
  M.clear(buf, true)
  return true
end

--- Watch `buf` in insert mode. Idempotent.
---@param opts infill.Config
function M.attach(buf, opts)
  hl_group = opts.ghost.hl_group
  if states[buf] then
    return
  end
  states[buf] = { index = 1 }
  local group = vim.api.nvim_create_augroup(("infill.ghost.%d"):format(buf), { clear = true })
  local function on_move()
    if not same(states[buf].anchor, here(buf)) then
      M.request(buf, false)
    end
  end
  vim.api.nvim_create_autocmd({ "InsertEnter", "TextChangedI", "CursorMovedI" }, {
    group = group, buffer = buf, callback = on_move,
  })
  vim.api.nvim_create_autocmd({ "InsertLeave", "BufLeave" }, {
    group = group, buffer = buf, callback = function() M.clear(buf) end,
  })
end

function M.detach(buf)
  M.clear(buf)
  states[buf] = nil
  pcall(vim.api.nvim_del_augroup_by_name, ("infill.ghost.%d"):format(buf))
end

M.namespace = ns
return M

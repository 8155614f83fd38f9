--- :InfillFix, :InfillFill and :InfillStatus: the server's code actions over a range, and its status.
---
--- The server offers "Fix this block" (quickfix: the syntax block under the cursor or selection) and
--- "Fill selection" (refactor.rewrite). Neovim resolves an action's edit lazily (codeAction/resolve), so
--- the model runs only when the action is chosen; a server that answers with the infill.fillRange
--- command instead applies the edit itself through workspace/applyEdit. Either way the outcome is
--- announced as `User InfillDone` with data { action, applied, error?, range?, text?, new_range? }.
--- While the model works, the command line says so ("infill: fixing the block… 3 s"); an edit that is
--- applied leaves the marks '< and '> around the new text (`gv` selects it); one that is not says why
--- (the server refuses code that would not parse, and names the setting when the deadline passed).

local lsp = require("infill.lsp")

local M = {}

local KINDS = { fix = "quickfix", fill = "refactor.rewrite" }

local LABELS = { fix = "fixing the block", fill = "filling the selection" }

--- Echo "infill: fixing the block… N s" every second until the returned function is called.
local function progress(what)
  local started, timer = vim.uv.now(), vim.uv.new_timer()
  local function show()
    local seconds = math.floor((vim.uv.now() - started) / 1000)
    vim.api.nvim_echo({ { ("infill: %s… %d s"):format(LABELS[what], seconds) } }, false, {})
  end
  show()
  timer:start(1000, 1000, vim.schedule_wrap(function()
    if not timer:is_closing() then
      show()
    end
  end))
  return function()
    if not timer:is_closing() then
      timer:stop()
      timer:close()
      vim.api.nvim_echo({ { "" } }, false, {})
    end
  end
end

local stop_progress = function() end

local function done(what, outcome)
  stop_progress()
  outcome.action = what
  if outcome.error then
    vim.notify(("infill: %s: %s"):format(what, outcome.error), vim.log.levels.WARN)
  end
  vim.api.nvim_exec_autocmds("User", { pattern = "InfillDone", data = outcome, modeline = false })
end

--- Marks '< and '> around the LSP range `range` (what the edit wrote), so that `gv` selects the new text.
local function mark_new_text(buf, range, encoding)
  if type(range) ~= "table" or vim.api.nvim_get_current_buf() ~= buf then
    return
  end
  local sr, sc = lsp.buf_pos(buf, range.start, encoding)
  local er, ec = lsp.buf_pos(buf, range["end"], encoding)
  if er > sr and ec == 0 then -- ends at a line start: the selection ends on the line before
    er = er - 1
    ec = #(vim.api.nvim_buf_get_lines(buf, er, er + 1, false)[1] or "") + 1
  end
  vim.api.nvim_buf_set_mark(buf, "<", sr + 1, sc, {})
  vim.api.nvim_buf_set_mark(buf, ">", er + 1, math.max(ec - 1, sc), {})
end

--- The first TextEdit of a WorkspaceEdit for `uri` (for the InfillDone event), and the document version
--- it was made for, if it says.
local function first_edit(edit, uri)
  for _, change in ipairs(edit.documentChanges or {}) do
    if change.textDocument and change.textDocument.uri == uri then
      return change.edits[1], change.textDocument.version
    end
  end
  return edit.changes and edit.changes[uri] and edit.changes[uri][1]
end

local function apply(buf, what, client, action)
  local uri = vim.uri_from_bufnr(buf)
  if action.edit then
    local e, version = first_edit(action.edit, uri)
    local now = vim.lsp.util.buf_versions[buf]
    if version and version ~= vim.NIL and now and now > version then -- Neovim would skip it
      return done(what, { applied = false, error = "the buffer changed while the model was working; run it again" })
    end
    vim.lsp.util.apply_workspace_edit(action.edit, client.offset_encoding)
    e = e or {}
    local new_range = type(action.data) == "table" and action.data.newRange or nil
    mark_new_text(buf, new_range, client.offset_encoding)
    done(what, { applied = true, range = e.range, text = e.newText, new_range = new_range })
  elseif action.command then -- infill.fillRange: the server sends workspace/applyEdit, then answers
    lsp.exec_cmd(client, action.command, buf, function(err, summary)
      summary = summary or {}
      if summary.applied then
        mark_new_text(buf, summary.newRange, client.offset_encoding)
      end
      done(what, { applied = summary.applied == true, range = summary.range, text = summary.text,
                   new_range = summary.newRange, error = err and err.message or summary.error })
    end)
  else -- the server says why: code that would not parse, the deadline, the buffer changed meanwhile
    local why = type(action.data) == "table" and action.data.error or nil
    done(what, { applied = false, error = why ~= vim.NIL and why or "no edit came back (see :LspLog)" })
  end
end

--- The LSP range of buffer lines `line1`..`line2` (1-based, inclusive); the exact characters of the
--- last visual selection when it was character-wise over those same lines.
local function lines_range(buf, line1, line2, encoding)
  local vs, ve = vim.fn.getpos("'<"), vim.fn.getpos("'>")
  if vim.fn.visualmode() == "v" and vs[2] == line1 and ve[2] == line2 then
    local last = vim.api.nvim_buf_get_lines(buf, line2 - 1, line2, false)[1] or ""
    -- '> is on the first byte of the last selected character (1-based): the range ends after it
    local end_col = ve[3] <= #last and ve[3] + vim.str_utf_end(last, ve[3]) or #last
    return { start = lsp.position(buf, line1 - 1, vs[3] - 1, encoding),
             ["end"] = lsp.position(buf, line2 - 1, end_col, encoding) }
  end
  local last = vim.api.nvim_buf_get_lines(buf, line2 - 1, line2, false)[1] or ""
  -- the lines' text: the line break after the last one stays, whatever the model writes
  return { start = { line = line1 - 1, character = 0 }, ["end"] = lsp.position(buf, line2 - 1, #last, encoding) }
end

--- Run the infill code action `what` ("fix" or "fill") over lines `line1`..`line2` (see lines_range),
--- or at the cursor when no lines are given.
---@param what "fix"|"fill"
---@param opts? {buf?: integer, line1?: integer, line2?: integer}
function M.run(what, opts)
  opts = opts or {}
  local buf = opts.buf or vim.api.nvim_get_current_buf()
  local client = lsp.client(buf)
  if not client then
    return done(what, { applied = false, error = "the infill language server is not attached here" })
  end
  local enc = client.offset_encoding
  local range
  if opts.line1 then
    range = lines_range(buf, opts.line1, opts.line2, enc)
  else
    local cursor = vim.api.nvim_win_get_cursor(0)
    local pos = lsp.position(buf, cursor[1] - 1, cursor[2], enc)
    range = { start = pos, ["end"] = pos }
  end
  local params = {
    textDocument = { uri = vim.uri_from_bufnr(buf) },
    range = range,
    context = { diagnostics = {}, only = { KINDS[what] }, triggerKind = 1 },
  }
  stop_progress()
  stop_progress = progress(what)
  lsp.request(client, "textDocument/codeAction", params, function(err, actions)
    local action
    for _, a in ipairs(actions or {}) do
      if a.kind == KINDS[what] then
        action = a
        break
      end
    end
    if err or not action then
      local why = err and err.message
        or (what == "fill" and "select a non-empty range"
          or "no block under the cursor (or infill is disabled for this filetype)")
      return done(what, { applied = false, error = why })
    end
    if action.edit or action.command or not action.data then
      return apply(buf, what, client, action)
    end
    lsp.request(client, "codeAction/resolve", action, function(rerr, resolved)
      if rerr then
        return done(what, { applied = false, error = rerr.message })
      end
      apply(buf, what, client, resolved or action)
    end, buf)
  end, buf)
end

local function pairs_line(t, skip)
  local parts = {}
  for _, k in ipairs(vim.tbl_keys(t)) do
    local v = t[k]
    if not (skip and skip[k]) and v ~= vim.NIL and type(v) ~= "table" then
      table.insert(parts, ("%s %s"):format(k, type(v) == "number" and (math.floor(v * 1000 + 0.5) / 1000) or v))
    end
  end
  table.sort(parts)
  return table.concat(parts, ", ")
end

--- infill/status as three lines: backend, counters, settings.
---@param status table
---@return string
function M.format_status(status)
  local backend = type(status.backend) == "table" and status.backend or {}
  local settings = type(status.settings) == "table" and status.settings or {}
  return table.concat({
    "infill: " .. pairs_line(backend),
    "requests: " .. pairs_line(status, { backend = true, settings = true }),
    "settings: " .. pairs_line(settings),
  }, "\n")
end

--- `infill/status` of the server attached to the current buffer, shown with vim.notify.
---@param callback? fun(status: table?, err: string?)
function M.status(callback)
  local client = lsp.client()
  local function show(status, err)
    if callback then
      return callback(status, err)
    end
    if err then
      return vim.notify("infill: " .. err, vim.log.levels.WARN)
    end
    vim.notify(M.format_status(status), vim.log.levels.INFO)
  end
  if not client then
    return show(nil, "the infill language server is not attached here")
  end
  lsp.request(client, lsp.methods.status, vim.empty_dict(), function(err, result)
    show(result, err and err.message)
  end)
end

return M

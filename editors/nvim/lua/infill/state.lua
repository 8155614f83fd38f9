--- The server's state, as it pushes it (the infill/state notification, server/notices.py): echoed while
--- the model loads and when it is ready, a warning (vim.notify) once per change when something needs the
--- user (suggestions slower than the deadline, a daemon that refuses us, a model that did not load), a
--- `User InfillState` event with the notice as data, and `require("infill").statusline()`.

local M = {}

--- server/contract.py STATES: what `state` can be.
M.STATES = { "starting", "loading", "ready", "slow", "refused", "unavailable", "failed" }

local WARN = { slow = true, refused = true, failed = true }

---@class infill.Notice
---@field state string        one of M.STATES
---@field message string      one line for people, the fix included
---@field model? string       the model's name
---@field setting? string     the server setting that fixes it

---@type infill.Notice?
M.current = nil
local warned ---@type string?

local function echo(text)
  vim.api.nvim_echo({ { text } }, false, {})
end

--- How to change `setting` from Neovim.
local function hint(setting)
  return setting and ("; in Neovim: require('infill').setup({ settings = { %s = ... } })"):format(setting) or ""
end

--- The handler of the infill/state notification.
function M.handle(err, notice)
  if err or type(notice) ~= "table" or type(notice.state) ~= "string" then
    return
  end
  M.current = notice
  vim.schedule(function()
    if notice.state == "loading" or notice.state == "unavailable" then
      echo("infill: " .. notice.message)
    elseif notice.state == "ready" then
      if warned or (M.shown and M.shown ~= "ready") then
        echo("infill: " .. notice.message)
      end
      warned = nil
    elseif WARN[notice.state] then
      local key = notice.state .. "\0" .. notice.message
      if key ~= warned then
        warned = key
        vim.notify("infill: " .. notice.message .. hint(notice.setting), vim.log.levels.WARN)
      end
    end
    M.shown = notice.state
    vim.api.nvim_exec_autocmds("User", { pattern = "InfillState", data = notice, modeline = false })
  end)
end

--- A short state for a statusline: "infill: MODEL" when ready, "infill: STATE" otherwise, "" before the
--- server has said anything.
---@return string
function M.statusline()
  local n = M.current
  if not n then
    return ""
  end
  if n.state == "ready" then
    return "infill: " .. (n.model or "ready")
  end
  return "infill: " .. n.state
end

return M

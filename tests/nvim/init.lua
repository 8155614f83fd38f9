-- The init of the plugin's tests: the plugin from this checkout and nothing of the user's.
--   nvim --headless --clean -u tests/nvim/init.lua -c "luafile tests/nvim/test_inline.lua"
local here = vim.fn.fnamemodify(debug.getinfo(1, "S").source:sub(2), ":p:h")
local root = vim.fn.fnamemodify(here, ":h:h")
vim.opt.runtimepath:prepend(root .. "/editors/nvim")
package.path = here .. "/?.lua;" .. package.path -- require("harness")
vim.o.swapfile = false
vim.o.shadafile = "NONE"
vim.o.more = false
vim.o.shortmess = vim.o.shortmess .. "I"
vim.cmd("filetype plugin indent on")
vim.o.showmode = false

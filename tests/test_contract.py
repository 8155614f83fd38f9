"""The contracts between the Python server and the editor clients (server/contract.py, server/settings.py,
infill/quality.py), read from the clients' own files: vscode-extension/package.json, its TypeScript, the
Neovim plugin's Lua and the READMEs. Each test fails when a client drifts from the Python side."""

from __future__ import annotations

import json
import re

from conftest import ROOT
from lsprotocol import types

from infill.quality import DEFAULTS, NAMES
from server import contract
from server.lsp import ACTIONS
from server.settings import SETTINGS, Settings

EXT = ROOT / "vscode-extension"
NVIM = ROOT / "editors" / "nvim" / "lua" / "infill"
SCHEMA_KEYS = ("type", "minimum", "maximum", "enum", "items", "maxItems", "additionalProperties")
DECLARED = [key for key, s in SETTINGS.items() if s.declared]


def read(path) -> str:
    return path.read_text(encoding="utf-8")


def ts_const(source: str, name: str) -> str:
    """The value of `const NAME = "..."` in TypeScript."""
    m = re.search(rf'\bconst {name} = "([^"]*)"', source)
    assert m, f"no string constant {name}"
    return m[1]


def ts_list(source: str, name: str) -> list[str]:
    """The strings of `const NAME = [...]` in TypeScript."""
    m = re.search(rf"\bconst {name} = \[([^\]]*)\]", source)
    assert m, f"no list constant {name}"
    return re.findall(r'"([^"]*)"', m[1])


def lua_table(source: str, name: str) -> dict[str, str]:
    """The string fields of `NAME = { key = "value", ... }` in Lua."""
    m = re.search(rf"\b{re.escape(name)} = \{{([^}}]*)\}}", source)
    assert m, f"no table {name}"
    return dict(re.findall(r'(\w+) = "([^"]*)"', m[1]))


def package_settings() -> dict[str, dict]:
    properties = json.loads(read(EXT / "package.json"))["contributes"]["configuration"]["properties"]
    assert all(key.startswith(f"{contract.SECTION}.") for key in properties)
    return {key.removeprefix(f"{contract.SECTION}."): value for key, value in properties.items()}


def test_package_json_declares_every_server_setting_with_its_type_bounds_and_default():
    declared, defaults = package_settings(), Settings()
    for key in DECLARED:
        setting = SETTINGS[key]
        assert key in declared, f"package.json lacks infill.{key}"
        assert {k: v for k, v in declared[key].items() if k in SCHEMA_KEYS} == setting.type.schema(), key
        assert declared[key]["default"] == setting.type.dump(getattr(defaults, setting.field)), key
    assert declared["quality"]["enum"] == list(NAMES) and declared["quality"]["default"] == DEFAULTS.typing
    assert declared["actionQuality"]["default"] == DEFAULTS.action
    assert declared["daemon"]["default"] == contract.DEFAULT_ADDRESS


def test_the_extension_sends_exactly_the_server_settings_and_reads_only_its_launch_settings():
    config = read(EXT / "src" / "config.ts")
    assert ts_const(config, "SECTION") == contract.SECTION
    server_keys, launch_keys = ts_list(config, "SERVER_KEYS"), ts_list(config, "LAUNCH_KEYS")
    assert sorted(server_keys) == sorted(DECLARED) and len(server_keys) == len(set(server_keys))
    # every other setting in package.json is the extension's own: how to start the server, or the client's trace
    assert set(package_settings()) == set(DECLARED) | set(launch_keys) | {"trace.server"}


def test_custom_methods_and_action_kinds_match_in_typescript_and_lua():
    assert ts_const(read(EXT / "src" / "extension.ts"), "FILL_RANGE") == contract.FILL_RANGE
    status_ts = read(EXT / "src" / "status.ts")
    assert ts_const(status_ts, "STATUS_REQUEST") == contract.STATUS
    assert ts_const(status_ts, "STATE_NOTIFICATION") == contract.STATE
    lsp_lua = read(NVIM / "lsp.lua")
    assert lua_table(lsp_lua, "M.methods") == {"inline": types.TEXT_DOCUMENT_INLINE_COMPLETION,
                                               "status": contract.STATUS, "fill_range": contract.FILL_RANGE,
                                               "state": contract.STATE}
    assert re.search(r'M\.name = "([^"]*)"', lsp_lua)[1] == contract.SECTION
    sections = re.findall(r"settings = \{ (\w+) = settings \}", lsp_lua)  # answers to workspace/configuration
    assert sections and set(sections) == {contract.SECTION}
    kinds = lua_table(read(NVIM / "actions.lua"), "KINDS")
    assert sorted(kinds.values()) == sorted(kind.value for _, kind in ACTIONS.values())


def test_both_clients_know_every_state_the_server_sends():
    """server/contract.py STATES, as status.ts and state.lua list them (each renders every one)."""
    ts = re.search(r"\bconst STATES = \[([^\]]*)\]", read(EXT / "src" / "status.ts"))
    assert ts and re.findall(r'"([^"]*)"', ts[1]) == list(contract.STATES)
    lua = re.search(r"\bM\.STATES = \{([^}]*)\}", read(NVIM / "state.lua"))
    assert lua and re.findall(r'"([^"]*)"', lua[1]) == list(contract.STATES)
    icons = re.search(r"const ICONS[^=]*= \{([^}]*)\}", read(EXT / "src" / "status.ts"))
    assert icons and set(contract.STATES) <= set(re.findall(r"(\w+):", icons[1]))


def test_the_docs_name_the_presets_and_the_defaults():
    assert f"--quality {'|'.join(NAMES)}" in read(ROOT / "README.md")
    table = dict(re.findall(r"^\| `infill\.(\w+)` \| `([^`]*)` \|", read(EXT / "README.md"), re.M))
    for key, shown in table.items():
        if key in SETTINGS:
            value = SETTINGS[key].type.dump(getattr(Settings(), SETTINGS[key].field))
            assert shown == (value if isinstance(value, str) and value else json.dumps(value)), key
    assert {"quality", "actionQuality", "daemon", "debounce"} <= set(table)


def test_extras_table_matches_pyproject():
    """infill/extras.py says which extra installs which module; pyproject.toml is where the extras are defined."""
    import tomllib

    from infill.extras import EXTRAS

    optional = tomllib.loads(read(ROOT / "pyproject.toml"))["project"]["optional-dependencies"]
    listed = {re.match(r"[A-Za-z0-9_.-]+", dep).group().lower(): extra for extra in ("gpu", "train")
              for dep in optional[extra]}
    assert listed == EXTRAS

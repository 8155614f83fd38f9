"""Node types per language: the only grammar knowledge the sizer needs.

Names come from each grammar's node-types.json (tree-sitter-python 0.25, -javascript 0.25,
-typescript 0.23, -go 0.25, -rust 0.24, -java 0.23, -c 0.24, -cpp 0.23, -lua 0.5).
"""

from __future__ import annotations

from ..errors import lookup
from ..textfix import BRACKETS, QUOTES

_JS_BRACES = frozenset({"statement_block", "class_body", "switch_body", "class_static_block"})
_C_BRACES = frozenset({"compound_statement", "field_declaration_list", "enumerator_list", "declaration_list"})

# Nodes whose `{ ... }` hold statements or declarations, not values: a `{` child of one opens a block.
# One row per grammar of infill.syntax.GRAMMARS (tests/test_spans.py checks that the tables agree).
BRACE_BLOCKS: dict[str, frozenset[str]] = {
    "python": frozenset(),
    "lua": frozenset(),
    "javascript": _JS_BRACES,
    "typescript": _JS_BRACES | {"enum_body", "interface_body"},
    "tsx": _JS_BRACES | {"enum_body", "interface_body"},
    "go": frozenset({"block", "field_declaration_list", "expression_switch_statement",
                     "type_switch_statement", "select_statement", "interface_type"}),
    "rust": frozenset({"block", "declaration_list", "field_declaration_list", "enum_variant_list", "match_block"}),
    "java": frozenset({"block", "class_body", "interface_body", "enum_body", "constructor_body",
                       "switch_block", "annotation_type_body", "module_body"}),
    "c": _C_BRACES,
    "cpp": _C_BRACES,
}

# Nodes whose named children are statements, besides the brace blocks and the root.
INDENT_BLOCKS: dict[str, frozenset[str]] = {
    "python": frozenset({"block"}),
    "lua": frozenset({"block"}),
    "go": frozenset({"statement_list"}),
}

# Leaves that end a block header when they end its line (`{` is checked by `is_block_brace`).
HEADER_ENDS: dict[str, frozenset[str]] = {
    "python": frozenset({":"}),
    "lua": frozenset({"then", "do", "else", "repeat", ")"}),  # `)` only where it ends a function's parameters
}

# Parents of a Python `:` that does not open a block.
PY_INLINE_COLONS = frozenset({"lambda", "pair", "slice", "type", "typed_parameter",
                              "typed_default_parameter", "format_specifier", "interpolation"})

# Leaves after which a `{` inside an ERROR node starts a value (object, struct literal), not a block.
VALUE_LEADS = frozenset({"=", ":=", "(", "[", ",", ":", "?", "return", "yield", "await", "||", "&&",
                         "??", "+", "-", "*", "/", "%", "!", "<", ">", "==", "!=", "in", "of", "case"})

OPENING = {**BRACKETS, "${": "}"}  # bracket leaves -> their closer (`${` opens a template interpolation)
QUOTE_LEAVES = frozenset({*QUOTES, '"""', "'''", "string_start", "string_end"})  # leaves that delimit strings

# Comments never count as the code of a line.
COMMENT_TYPES = frozenset({"comment", "line_comment", "block_comment"})


def brace_blocks(language: str) -> frozenset[str]:
    """The BRACE_BLOCKS row of a grammar; a grammar without one is named in the error, not a bare KeyError."""
    return lookup(BRACE_BLOCKS, "sizing-table grammar", language)


def statement_containers(language: str) -> frozenset[str]:
    """Node types whose named children are statements (the root is one too)."""
    return brace_blocks(language) | INDENT_BLOCKS.get(language, frozenset())

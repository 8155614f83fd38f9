"""Size the hole to fill: where it is, what kind of code goes there, and how many tokens it may need.

`size_hole` classifies a cursor (mid-expression, end of line, new statement, empty block body) or
takes a selected range as given, and returns a `Hole` with the replace range, the indentation of new
lines, the brackets the middle must close and a few candidate canvas lengths. `block_at` finds the
block or statement to rewrite for "fix this block". tree-sitter does the reading where the language
has a grammar; other files are read line by line.
"""

from .blocks import block_at
from .config import SizingConfig
from .lengths import one_row_length
from .sizer import size_hole

__all__ = ["SizingConfig", "block_at", "one_row_length", "size_hole"]

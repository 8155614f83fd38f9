"""Warm starts: which later requests continue a remembered middle (║ marks the cursor)."""

import pytest

from infill.warmstart import Drafts

DOC = "def f(x):\n    return ║\n\nprint(f(2))\n"


def at(doc: str) -> tuple[str, int]:
    return doc.replace("║", ""), doc.index("║")


@pytest.fixture
def drafts() -> Drafts:
    d = Drafts()
    d.remember(*at(DOC), "x + 1")
    return d


@pytest.mark.parametrize("doc, rest", [
    (DOC, "x + 1"),  # nothing typed: the same request again
    (DOC.replace("║", "x ║"), "+ 1"),  # the start of the middle typed
    (DOC.replace("║", "x + ║"), "1"),
    (DOC.replace("║", "y ║"), None),  # typed something else
    (DOC.replace("║", "x + 1║"), None),  # the whole middle typed: nothing left to seed
    (DOC.replace("║", "x ║").replace("f(2)", "f(3)"), None),  # the suffix changed
    (DOC.replace("║", "║x "), None),  # the cursor is not after the typed text
])
def test_a_draft_seeds_only_a_continuation_of_itself(drafts, doc, rest):
    assert drafts.seed(*at(doc)) == rest


def test_the_newest_draft_wins_and_old_ones_are_forgotten():
    d = Drafts(entries=2)
    text, cursor = at(DOC)
    d.remember(text, cursor, "x + 1")
    d.remember(text, cursor, "x * 2")
    assert d.seed(text, cursor) == "x * 2"
    d.remember("other", 0, "a")
    d.remember("other", 0, "b")
    assert d.seed(text, cursor) is None and (d.hits, d.misses) == (1, 1)
    d.remember(text, cursor, "   ")  # blank middles are not worth a seed
    assert d.seed(text, cursor) is None

"""Email/set's short path for keyword patches (app.email.set._keywords_patched) gives what the
general path (apply_patch, then check_keywords) gives, and leaves every other patch to it."""

import pytest

from app.email.set import MUTABLE, _keywords_patched
from app.email.validate import check_keywords
from app.protocol.standard import apply_patch

STORED = {"$seen": True, "work": True}


def general(patch: dict) -> dict:
    lowered = {(p.lower() if p.startswith("keywords/") else p): v for p, v in patch.items()}
    patched, problems, errors = apply_patch({"keywords": STORED, "mailboxIds": {"M1": True}}, lowered, MUTABLE)
    keywords = check_keywords(patched["keywords"], problems)
    assert not problems and not errors
    return keywords


@pytest.mark.parametrize("patch", [
    {"keywords/$flagged": True},
    {"keywords/$seen": None},
    {"keywords/$Flagged": True, "keywords/$bench": True},
    {"keywords/absent": None},
    {"keywords/$SEEN": None, "keywords/new": True},
    {"keywords/work": True},
    {},
])
def test_keyword_patches_match_the_general_path(patch):
    assert _keywords_patched(STORED, patch) == general(patch)


@pytest.mark.parametrize("patch", [
    {"keywords/$seen": False},  # only true is a keyword's value: the general path words the error
    {"keywords/$seen": 1},
    {"keywords/a b": True},  # not a valid keyword
    {"keywords/a~1b": True},  # an escaped pointer
    {"keywords/a/b": True},  # a path inside a keyword's value
    {"keywords": {"$seen": True}},  # the whole property
    {"mailboxIds/M2": True},
    {"keywords/$seen": True, "mailboxIds/M2": True},
    {f"keywords/k{i}": True for i in range(100)},  # over MAX_KEYWORDS with the stored two
])
def test_other_patches_go_the_general_way(patch):
    assert _keywords_patched(STORED, patch) is None


def test_the_stored_keywords_are_not_changed():
    stored = dict(STORED)
    _keywords_patched(stored, {"keywords/$seen": None, "keywords/x": True})
    assert stored == STORED

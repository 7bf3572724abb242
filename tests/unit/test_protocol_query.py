"""check_sort (RFC 8620 §5.5): a Comparator's properties the server does not know are ignored, the
ones the RFC defines are still checked."""

from __future__ import annotations

import pytest

from app.protocol.errors import MethodError
from app.protocol.query import check_sort

KNOWN = {"receivedAt", "subject"}


@pytest.mark.parametrize("extra", [
    {"anchorOffset": 0, "calculateTotal": False, "position": 0},  # what jmapc 0.4 sends (case r04)
    {"anchor": None, "limit": None},
    {"somethingNew": {"nested": [1, 2]}},
])
def test_comparator_properties_the_server_does_not_know_are_ignored(extra):
    comp = {"property": "receivedAt", "isAscending": False, **extra}
    assert check_sort([comp], KNOWN) == [comp]


def test_no_sort_is_an_empty_list():
    assert check_sort(None, KNOWN) == []


@pytest.mark.parametrize("sort, error", [
    ("receivedAt", "invalidArguments"),
    ([{"isAscending": True}], "invalidArguments"),
    (["receivedAt"], "invalidArguments"),
    ([{"property": "receivedAt", "isAscending": "no"}], "invalidArguments"),
    ([{"property": "nosuch"}], "unsupportedSort"),
    ([{"property": "subject", "collation": "i;octet-unknown"}], "unsupportedSort"),
])
def test_the_comparator_properties_the_rfc_defines_are_still_checked(sort, error):
    with pytest.raises(MethodError) as exc:
        check_sort(sort, KNOWN)
    assert exc.value.type == error

"""Paths a client writes: PatchObject paths (RFC 8620 §5.3) and result-reference pointers (RFC 8620
§3.7, RFC 6901) are judged in linear time, quote what was sent cut short, and take only ASCII
digits as array indexes (cases o06, o09)."""

from __future__ import annotations

import time

import pytest

from app.protocol.errors import MethodError
from app.protocol.query import check_sort
from app.protocol.resultref import evaluate_pointer
from app.protocol.standard import MAX_PATCH_PATH, MAX_PATCH_SEGMENTS, apply_patch, patch_set_error

OBJ = {"keywords": {"$seen": True}, "name": "x", "tree": {"a": {"b": 1}}, "list": [1, 2]}
ROOTS = ("keywords", "name", "tree", "list")


def test_a_long_path_is_refused_at_once_and_not_quoted_whole():
    for n in (10_000, 40_000, 400_000):
        path = "keywords/" + "a/" * n + "b"
        started = time.perf_counter()
        _, problems, errors = apply_patch(OBJ, {path: True}, ROOTS)
        assert time.perf_counter() - started < 0.05, n
        assert not problems and list(errors) == [path]
        error = patch_set_error(problems, errors)
        assert error["type"] == "invalidPatch" and len(error["description"]) < 250


def test_the_caps_are_on_characters_and_segments():
    deep = "tree/" + "a/" * MAX_PATCH_SEGMENTS + "b"
    assert len(deep) < MAX_PATCH_PATH
    assert list(apply_patch(OBJ, {deep: 1}, ROOTS)[2]) == [deep]
    long = "keywords/" + "k" * MAX_PATCH_PATH
    assert list(apply_patch(OBJ, {long: True}, ROOTS)[2]) == [long]


def test_many_prefix_paths_are_judged_in_linear_time():
    # a patch of many paths, each the prefix of the next: every one but the longest is patched
    # "as a whole too"; the old prefix loop was quadratic in this
    paths = {"tree/" + "/".join(["a"] * i): {} for i in range(1, 90)}
    started = time.perf_counter()
    _, _, errors = apply_patch(OBJ, paths, ROOTS)
    assert time.perf_counter() - started < 0.05
    assert set(errors) == set(list(paths)[1:])


@pytest.mark.parametrize("patch, bad", [
    ({"tree/a": {}, "tree/a/b": 2}, ["tree/a/b"]),
    ({"tree": {}, "tree/a/b": 2}, ["tree/a/b"]),
    ({"tree/a/b": 2, "tree/a/b!": 3}, []),  # "tree/a/b" is no path-prefix of "tree/a/b!"
    ({"tree/a": {}, "tree/ab": 3}, []),
    ({"tree//x": 1, "tree/": {}}, ["tree//x"]),  # an empty segment is a segment
])
def test_prefix_rule(patch, bad):
    errors = apply_patch(OBJ, patch, ROOTS)[2]
    assert sorted(p for p, why in errors.items() if "as a whole" in why) == bad


def test_ordinary_patches_still_apply():
    out, problems, errors = apply_patch(OBJ, {"keywords/$flagged": True, "keywords/$seen": None,
                                              "tree/a/c": 2, "name": "y"}, ROOTS)
    assert not problems and not errors
    assert out["keywords"] == {"$flagged": True} and out["tree"] == {"a": {"b": 1, "c": 2}} and out["name"] == "y"
    assert OBJ["keywords"] == {"$seen": True}  # the original is untouched
    assert "inside an array" in apply_patch(OBJ, {"list/0": 5}, ROOTS)[2]["list/0"]


# ------------------------------------------------------------------------ result references
RESPONSE = {"ids": ["m0", "m1", "m2"], "list": [{"id": "a", "to": ["x", "y"]}, {"id": "b", "to": ["z"]}]}


@pytest.mark.parametrize("index", ["0", "1", "2"])
def test_ascii_indexes(index):
    assert evaluate_pointer(RESPONSE, f"/ids/{index}") == f"m{index}"


@pytest.mark.parametrize("index", ["²", "٠", "١", "01", "00", "-0", "+1", " 1", "1 ", "3", "9" * 5000, ""])
def test_other_indexes_are_invalid_result_references(index):
    with pytest.raises(MethodError) as err:
        evaluate_pointer(RESPONSE, f"/ids/{index}")
    assert err.value.body()["type"] == "invalidResultReference"
    assert len(err.value.body()["description"]) < 250


def test_star_still_maps_and_flattens():
    assert evaluate_pointer(RESPONSE, "/list/*/to") == ["x", "y", "z"]
    assert evaluate_pointer(RESPONSE, "/list/*/id") == ["a", "b"]


# ------------------------------------------------------------------------------- comparators
@pytest.mark.parametrize("collation", [1, True, ["i;ascii-casemap"], {}])
def test_a_collation_of_the_wrong_type_is_invalid_arguments(collation):
    with pytest.raises(MethodError) as err:
        check_sort([{"property": "name", "collation": collation}], {"name"})
    assert err.value.body()["type"] == "invalidArguments"


def test_an_unknown_collation_name_is_unsupported_sort():
    with pytest.raises(MethodError) as err:
        check_sort([{"property": "name", "collation": "i;octet-bogus"}], {"name"})
    assert err.value.body()["type"] == "unsupportedSort"


def test_ascii_numeric_collation_compares_huge_and_non_ascii_numbers_without_failing():
    from app.email.query import _collation

    key = _collation("i;ascii-numeric")
    values = ["10 apples", "9 pears", "0009 figs", "٣ dates", "x", "5" * 5000 + " big", "007"]
    ordered = sorted(values, key=key)
    assert ordered[0] == "007" and set(ordered[1:3]) == {"0009 figs", "9 pears"} and ordered[3] == "10 apples"
    assert ordered[4] == "5" * 5000 + " big"
    assert set(ordered[5:]) == {"٣ dates", "x"}  # no leading ASCII digits: after every number

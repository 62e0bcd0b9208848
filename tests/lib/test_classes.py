import json

import numpy as np
import pytest

from glnet.classes import DEEPGLOBE, ClassInfo, ClassTable
from glnet.errors import GLNetError


def test_deepglobe_table():
    assert len(DEEPGLOBE) == 7
    assert DEEPGLOBE.names == ["unknown", "urban", "agriculture", "rangeland", "forest", "water", "barren"]
    colors = DEEPGLOBE.colors
    assert colors.shape == (7, 3) and colors.dtype == np.uint8
    assert colors[1].tolist() == [0, 255, 255]
    assert colors[5].tolist() == [0, 0, 255]


def test_to_list_from_list_round_trip_through_json():
    items = json.loads(json.dumps(DEEPGLOBE.to_list()))
    assert items[2] == {"name": "agriculture", "color": [255, 255, 0]}
    assert ClassTable.from_list(items) == DEEPGLOBE


def test_from_list_accepts_numpy_ints_and_tuples():
    table = ClassTable.from_list([{"name": "a", "color": np.array([1, 2, 3])}, {"name": "b", "color": (4, 5, 6)}])
    assert table.classes[0].color == (1, 2, 3)
    assert all(type(v) is int for v in table.classes[0].color)


@pytest.mark.parametrize(
    "items, message",
    [
        ([], "empty"),
        ("unknown", "must be a list"),
        ({"name": "a", "color": [0, 0, 0]}, "must be a list"),
        ([{"name": "a"}], "entry 0 must have a 'name' and a 'color'"),
        (["a"], "entry 0 must have"),
        ([{"name": 3, "color": [0, 0, 0]}], "entry 0: name must be a string"),
        ([{"name": "a", "color": [0, 0]}], r"entry 0 \('a'\): colour must be 3 integers"),
        ([{"name": "a", "color": [0, 0, 256]}], "0..255"),
        ([{"name": "a", "color": [0, -1, 0]}], "0..255"),
        ([{"name": "a", "color": [0.5, 0, 0]}], "0..255"),
        ([{"name": "a", "color": [True, 0, 0]}], "0..255"),
        ([{"name": "a", "color": "red"}], "colour must be a list"),
        (
            [{"name": "a", "color": [1, 2, 3]}, {"name": "b", "color": [9, 9, 9]}, {"name": "c", "color": [1, 2, 3]}],
            r"classes 0 and 2 \('c'\) share the colour \[1, 2, 3\]",
        ),
    ],
)
def test_from_list_validation(items, message):
    with pytest.raises(GLNetError, match=message):
        ClassTable.from_list(items)


def test_direct_construction_is_validated_too():
    with pytest.raises(GLNetError, match="0..255"):
        ClassInfo("a", (0, 0, 300))
    with pytest.raises(GLNetError, match="share the colour"):
        ClassTable((ClassInfo("a", (0, 0, 0)), ClassInfo("b", (0, 0, 0))))
    with pytest.raises(GLNetError, match="empty"):
        ClassTable(())


def test_tables_are_immutable_and_hashable():
    with pytest.raises(AttributeError):
        DEEPGLOBE.classes = ()
    assert hash(DEEPGLOBE) == hash(ClassTable.from_list(DEEPGLOBE.to_list()))


def test_default_tables():
    seven = ClassTable.default(7)
    assert seven.names == [f"class {i}" for i in range(7)]
    np.testing.assert_array_equal(seven.colors, DEEPGLOBE.colors)

    for n in (1, 2, 5, 300):
        table = ClassTable.default(n)
        assert len(table) == n
        assert len({tuple(c) for c in table.colors.tolist()}) == n  # all distinct
    assert ClassTable.default(3).colors.tolist() == [[0, 0, 0], [128, 0, 0], [0, 128, 0]]

    for bad in (0, -1, 2.5, "3"):
        with pytest.raises(GLNetError, match="number of classes"):
            ClassTable.default(bad)

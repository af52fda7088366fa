"""The index ranges a volume is told to hold ("volume 2 done: holds indexes 301-655")."""

from __future__ import annotations

from array import array

import pytest

from multivolumecopy.catalog import format_ranges, index_ranges


@pytest.mark.parametrize(
    "indexes,said",
    [
        (array("q", [0, 1, 2, 5, 6, 9]), "0-2, 5-6, 9"),  # in order, as a volume's indexes come
        ([9, 5, 0, 2, 1, 6], "0-2, 5-6, 9"),  # in any order
        ([3, 3, 4, 4], "3-4"),  # told twice
        ([], "none"),
    ],
)
def test_index_ranges_are_runs_of_consecutive_indexes(indexes, said):
    assert format_ranges(index_ranges(indexes)) == said

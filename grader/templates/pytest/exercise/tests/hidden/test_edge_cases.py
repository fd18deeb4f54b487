import pytest

from metrics import accuracy


def test_empty_input_is_refused():
    with pytest.raises(ValueError):
        accuracy([], [])


def test_length_mismatch_is_refused():
    with pytest.raises(ValueError):
        accuracy([1, 2, 3], [1, 2])


def test_result_is_a_fraction_not_a_count():
    assert accuracy([1, 0, 1], [1, 1, 1]) == pytest.approx(2 / 3)

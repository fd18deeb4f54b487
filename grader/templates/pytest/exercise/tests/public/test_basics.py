from metrics import accuracy


def test_all_match():
    assert accuracy([0, 1, 2], [0, 1, 2]) == 1.0


def test_half_match():
    assert accuracy([0, 1, 1, 0], [0, 1, 0, 1]) == 0.5

from models.accounts.rules import lockout_seconds


def test_each_lockout_in_a_row_lasts_twice_the_last_up_to_the_cap() -> None:
    assert [lockout_seconds(n, 60, 900) for n in range(1, 7)] == [60, 120, 240, 480, 900, 900]

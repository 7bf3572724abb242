"""The failed-login windows of app.loginlimit, on a given clock."""

from __future__ import annotations

from app.loginlimit import LoginLimiter


def test_address_is_refused_after_its_limit_until_the_window_has_room():
    limits = LoginLimiter(per_address=3, address_window=60, per_user=100, user_window=60)
    assert [limits.failed("u", "a", now=t) for t in (0, 10, 20)] == [(False, False), (False, False),
                                                                     (True, False)]
    assert limits.check("u", "a", now=21) == (39, "address")  # the first failure leaves at 60
    assert limits.check("other", "a", now=21) == (39, "address")
    assert limits.check("u", "b", now=21) is None  # other addresses are not affected
    assert limits.check("u", "a", now=59.5) == (1, "address")
    assert limits.check("u", "a", now=60) is None
    limits.failed("u", "a", now=61)  # three in the window again (10, 20, 61)
    assert limits.check("u", "a", now=62) == (8, "address")


def test_user_limit_spares_addresses_the_user_logged_in_from():
    limits = LoginLimiter(per_address=2, address_window=60, per_user=4, user_window=100)
    limits.succeeded("u", "home", now=0)
    for n, address in enumerate(("x", "x", "y", "y")):
        limits.failed("u", address, now=1 + n)
    assert limits.check("u", "z", now=10) == (91, "user")
    assert limits.check("u", "home", now=10) is None
    assert limits.check("v", "z", now=10) is None
    assert limits.check("u", "z", now=101) is None


def test_tables_stay_bounded():
    limits = LoginLimiter(per_address=2, per_user=2, max_keys=10)
    for n in range(100):
        limits.failed(f"user{n}", f"addr{n}", now=n)
        limits.succeeded(f"user{n}", f"addr{n}", now=n)
    assert len(limits._addresses) == len(limits._users) == len(limits._known) == 10

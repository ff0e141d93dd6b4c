from shipping import shipping_cost


def test_base_rate() -> None:
    assert shipping_cost(0) == 5.0


def test_new_tariff() -> None:
    # The carrier's new tariff: 2.00 euros per kilogram. shipping.py still charges 1.50.
    assert shipping_cost(2) == 9.0

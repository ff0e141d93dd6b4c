"""Shipping cost of a parcel."""

BASE_RATE = 5.0  # euros per parcel
RATE_PER_KG = 1.5  # euros per kilogram


def shipping_cost(weight_kg: float) -> float:
    """Cost in euros of shipping a parcel of ``weight_kg`` kilograms."""
    if weight_kg < 0:
        raise ValueError("weight_kg must not be negative")
    return BASE_RATE + RATE_PER_KG * weight_kg

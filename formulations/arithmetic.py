"""Integer arithmetic the models share, written once."""

from __future__ import annotations


def ceil_div(a, b):
    """ceil(a / b) for integers a >= 0, b > 0 (numpy integer arrays elementwise): exact at any
    size, unlike rounding a float quotient up. How many blocks hold a number of tokens, how
    many budget-sized chunks a prompt takes."""
    return -(-a // b)

"""Upper bounds on hindsight SLO attainment (interval_lp.py) for instances beyond the exact oracle."""

INTEGER_ROUNDING = 1e-5  # an LP bound of 6.99999 proves 7, not 6 (rounding up is always safe)

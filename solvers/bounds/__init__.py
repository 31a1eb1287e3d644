"""Upper bounds on hindsight SLO attainment (interval_lp.py) for instances beyond the exact oracle."""

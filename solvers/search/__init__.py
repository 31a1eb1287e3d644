"""Searches for good schedules beyond the online policies (lns.py)."""

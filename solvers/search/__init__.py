"""Searches for good schedules beyond the online policies: the window LNS (windows.py) whose
move re-optimizes one window exactly with CP-SAT (window_model.py)."""

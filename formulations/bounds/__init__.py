"""Relaxations of the hindsight problem (the problem side only; solvers/bounds solves them).

- windows.py: per request and output token, the earliest possible and the latest allowed
  delivery time and the engine work the token forces, valid for every engine schedule.
- intervals.py: the interval (energetic) relaxation built from them: which sets of requests can
  all meet their SLOs given the work each must fit inside every time interval.
"""

"""Exact solvers of the hindsight problem (CP-SAT, CBC, HiGHS) over formulations.exact."""

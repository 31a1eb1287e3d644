"""Multidimensional (m-D) 0/1 knapsack: the per-step batch-selection problem and its solvers."""

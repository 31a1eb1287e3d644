"""Exact models (building only, no solving): the offline hindsight problem and the per-step knapsack."""

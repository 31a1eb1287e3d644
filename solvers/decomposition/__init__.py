"""The exact hindsight optimum by a decomposition over which requests are met (solve.py):
a master over met sets (master.py), feasibility subproblems with cores (feasibility.py) and a
cache of what is proven about subsets (cache.py)."""

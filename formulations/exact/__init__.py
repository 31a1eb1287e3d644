"""Exact models (building only, no solver library): the offline hindsight problem and the per-step knapsack.

- hindsight.py: the general slot-indexed model (chunked prefill, recompute preemption, DAGs).
- compact.py: the slot-indexed model for engines whose token budget can never bind, with the
  dominance rules that make it small (solvers/exact/tokens.py states it token-indexed for CP-SAT).
- build.py picks one; linear.py holds the backend-neutral integer model that the backends in
  solvers/exact/ translate; assignment.py decodes/plays per-iteration assignments; slots.py has the
  slotted time arithmetic; generate.py seeded test/benchmark instances.
- knapsack.py: the per-step m-D knapsack (and the OR-Library reader).
"""

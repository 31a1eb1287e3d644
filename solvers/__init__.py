"""How the problem is solved: exact solvers, knapsack solvers, online policies, length predictors."""

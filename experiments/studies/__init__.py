"""Studies: what is measured beyond one run (optimality gap vs the exact oracle, predictor accuracy and sensitivity, online evaluation in vLLM)."""

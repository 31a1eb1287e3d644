"""Online scheduling policies (each a `formulations.online.Policy`)."""

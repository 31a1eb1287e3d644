"""The built-in simulated engine (default backend): `simulate(instance, policy, predictor)`."""

from engine_adapter.simulator.engine import SimulationStalled, simulate

__all__ = ["SimulationStalled", "simulate"]

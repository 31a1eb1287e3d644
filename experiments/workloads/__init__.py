"""Workloads: a trace or synthetic arrivals, classes, SLO parameters and bulk DAGs -> Instance."""

from experiments.workloads.builder import build_instance
from experiments.workloads.spec import BulkSLO, ClassMix, Dist, LatencySLO, ThroughputSLO, WorkloadConfig

__all__ = ["BulkSLO", "ClassMix", "Dist", "LatencySLO", "ThroughputSLO", "WorkloadConfig", "build_instance"]

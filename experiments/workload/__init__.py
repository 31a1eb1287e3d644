"""Workloads: a trace or synthetic arrivals, classes, SLO parameters and bulk DAGs -> Instance."""

from experiments.workload.builder import build_instance
from experiments.workload.spec import BulkSLO, ClassMix, Dist, LatencySLO, ThroughputSLO, WorkloadConfig

__all__ = ["BulkSLO", "ClassMix", "Dist", "LatencySLO", "ThroughputSLO", "WorkloadConfig", "build_instance"]

"""What the scheduling problem is: requests, SLOs, the engine model, scoring, exact models.

Nothing here solves anything or runs an engine; every other package builds on these definitions.
"""

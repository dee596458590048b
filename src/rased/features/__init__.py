"""Feature engineering from behavioral events, shared by training and the scoring worker.

Pure numpy: every function takes an internal event type (e.g. `Trajectory`) and returns
fixed-length float vectors whose column names are published next to them.
"""

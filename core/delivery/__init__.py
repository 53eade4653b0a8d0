"""Delivery: message runs that stop, restart and survive a crash.

A run snapshots its plan into recipients; a delivering process holds a lease
on the run, claims recipients just before handing them to a connection, and
records results in batches. Each state change is a guarded transition named
once, in ``store.py``.
"""

"""Delivery: message runs that stop, restart and survive a crash.

A run snapshots its plan into recipients (``starting.py``); a delivering process
(``deliverer.py``) reserves due recipients (``queries.py``), marks them
`sending` just before handing them to a connection, and records results in
batches. Every state change is a named transition guarded by the state it
leaves, in ``transitions.py`` alone; the allowed ones are the tables of
``core/states.py``. Pure decisions (reply → state, settled state, fair shares) are
``policy.py`` and ``retry_policy.py``.
"""

"""Read models: what the console and the command line show, each computed in one place.

``runs`` — the runs list, a run's progress and whether it can be restarted,
a window of its recipients and one recipient's delivery in full;
``customers`` — finding customers by id, name or address, and the drill-down;
``plans`` — the definitions and a definition's plan preview.

Nothing here writes, and nothing here knows about a terminal.
"""

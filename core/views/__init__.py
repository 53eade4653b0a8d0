"""Read models: what the console and the command line show, each computed in one place.

``runs`` — the runs list, a run's progress and whether it can be restarted,
a window of its recipients and one recipient's delivery in full;
``recipients`` — a window of a run's recipients as the console lists them;
``run_json`` — ``run show --json``; ``deliveries`` — every recipient's delivery;
``export_rows`` and ``export_file`` — a run's export, its rows and the file;
``message_preview`` — one recipient's message as msgrun builds it;
``bounces`` — reports read back;
``customers`` — finding customers by id, name or address, and the drill-down;
``plans`` — the definitions and a definition's plan preview.

Nothing here writes to the database, and nothing here knows about a terminal.
"""

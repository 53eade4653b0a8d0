"""msgrun's engine: model, storage, planning and delivery.

Nothing in this package imports a user interface (Textual, Rich or ``tui``);
``tests/test_boundaries.py`` keeps it so. The console, the command line and the
worker are thin clients of the calls made here.
"""

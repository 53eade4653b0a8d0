"""The msgrun console (Textual): runs, run detail, plan preview, customer drill-down."""

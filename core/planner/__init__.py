"""The planner: who is included in a message run, and why not."""

"""What starts runs without a person: routines on a schedule, and events."""

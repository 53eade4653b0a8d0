"""Unsubscribe (inbox.md): tokens that name a run's recipient, the List-Unsubscribe
headers, and the records of what an unsubscribe turned off."""

"""Messages: what a recipient's message is built from, and building it.

Below the planner (whose render check renders the templates), delivery (which
sends what ``compose`` builds) and bounces (which read back the VERP address
``verp`` writes): ``compose.py`` (templates, batch contexts, drafts, the
``Composer``), ``due.py`` (a recipient due, as a message is built from it),
``message.py`` (the bytes), ``attaching.py`` (files attached), ``dkim_sign.py``
(the DKIM signature), ``verp.py`` (the token naming a recipient in the envelope
sender).
"""

"""Documents' files attached to messages (``attachments.md``).

``folder``: paths kept inside the documents folder, and files opened safely;
``specs``: what a message must attach, as stored; ``reckon``: the size rule 20
reckons; ``mime``: the attachments read, encoded and put into a message.
"""

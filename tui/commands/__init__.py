"""One module per group of ``msgrun`` commands."""

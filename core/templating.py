"""Jinja2 templates, rendered only in the sandbox."""

from __future__ import annotations

from functools import cache

from jinja2 import StrictUndefined, Template, TemplateSyntaxError
from jinja2.sandbox import ImmutableSandboxedEnvironment


@cache
def environment() -> ImmutableSandboxedEnvironment:
    # StrictUndefined: a misspelt variable fails that recipient with the error,
    # instead of sending "Dear ," to everyone.
    return ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False)


def template_problem(source: str) -> str | None:
    """Why ``source`` is not a valid template, or None."""
    try:
        environment().parse(source)
    except TemplateSyntaxError as error:
        return f"template error at line {error.lineno}: {error.message}"
    return None


class RenderError(Exception):
    """A template failed for one recipient; the message says why."""


@cache
def compiled(source: str) -> Template:
    """A template compiled once, however many recipients it is rendered for."""
    return environment().from_string(source)


def render(source: str, context: dict[str, object]) -> str:
    try:
        return compiled(source).render(context)
    except Exception as error:  # any template failure fails that recipient, with the error
        raise RenderError(f"template error: {type(error).__name__}: {error}") from None

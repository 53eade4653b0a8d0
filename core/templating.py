"""Jinja2 templates, rendered only in the sandbox.

A definition's ``template.html`` renders with autoescape: every value is escaped as
HTML (``|safe`` only where the template's author writes it), so a customer's name
is text in every mail client. Its subject and text part are plain text, never
escaped.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateSyntaxError, meta
from jinja2.sandbox import ImmutableSandboxedEnvironment


@cache
def environment(html: bool = False) -> ImmutableSandboxedEnvironment:
    # StrictUndefined: a misspelt variable fails that recipient with the error,
    # instead of sending "Dear ," to everyone.
    return ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=html)


def template_problem(source: str) -> str | None:
    """Why ``source`` is not a valid template, or None."""
    try:
        environment().parse(source)
    except TemplateSyntaxError as error:
        return f"template error at line {error.lineno}: {error.message}"
    return None


def names_used(source: str) -> frozenset[str]:
    """The values a valid template reads from those it is given (``customer``,
    ``document``…): every name it uses without setting it itself."""
    return frozenset(meta.find_undeclared_variables(environment().parse(source)))


class RenderError(Exception):
    """A template failed for one recipient; the message says why."""


@cache
def compiled(source: str, html: bool = False) -> Template:
    """A template compiled once, however many recipients it is rendered for; an HTML
    one (``html``) escapes every value it prints."""
    return environment(html).from_string(source)


@cache
def _names(source: str, html: bool) -> dict[str, Any]:
    """The names every rendering of ``source`` sees besides its values (Jinja's
    globals: ``range``, ``dict``…), as one dict: Jinja merges them from a ChainMap
    on every render, the larger part of a short template's cost."""
    return dict(compiled(source, html).globals)


def render(source: str, context: dict[str, Any], *, html: bool = False) -> str:
    """``source`` rendered with ``context``: what ``Template.render`` does, with the
    names merged in once (``_names``); with ``html``, every value escaped as HTML."""
    template = compiled(source, html)
    try:
        values = template.new_context({**_names(source, html), **context}, shared=True)
        return "".join(template.root_render_func(values))
    except Exception as error:  # any template failure fails that recipient, with the error
        raise RenderError(f"template error: {type(error).__name__}: {error}") from None

"""Templates render in Jinja's immutable sandbox, strictly, as Template.render would."""

from __future__ import annotations

import pytest

from core.templating import RenderError, compiled, render

VALUES = {
    "customer": {"id": "C1", "name": "Ana Souza", "attributes": {"plan": "gold"}},
    "document": {"number": "INV-7", "amount": "12.50", "due_date": "2026-12-01"},
    "organisation": {"name": "Blue Lagoon", "timezone": "Europe/Amsterdam"},
}


@pytest.mark.parametrize(
    "source",
    [
        "Dear {{ customer.name }}, invoice {{ document.number }} is due {{ document.due_date }}.",
        "{% for i in range(3) %}{{ i }}{% endfor %} {{ dict(a=1)['a'] }}",  # Jinja's globals
        "{{ customer.attributes.plan | upper }} {{ '%s' % organisation.name }}",
        "{% set n = namespace(total=0) %}{% for x in [1, 2] %}{% set n.total = n.total + x %}"
        "{% endfor %}{{ n.total }}",
    ],
)
def test_render_is_what_jinja_renders(source: str) -> None:
    assert render(source, VALUES) == compiled(source).render(VALUES)


def test_a_template_cannot_reach_python_internals() -> None:
    with pytest.raises(RenderError, match="SecurityError"):
        render("{{ customer.__class__.__mro__ }}", VALUES)


def test_a_template_cannot_change_the_values_it_is_given() -> None:
    with pytest.raises(RenderError, match="SecurityError"):
        render("{{ customer.attributes.update({'plan': 'free'}) }}", VALUES)
    assert VALUES["customer"]["attributes"] == {"plan": "gold"}


def test_a_misspelt_name_fails_instead_of_rendering_empty() -> None:
    with pytest.raises(RenderError, match="UndefinedError: 'custmer' is undefined"):
        render("Dear {{ custmer.name }},", VALUES)

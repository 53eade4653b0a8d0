"""Templates render in Jinja's immutable sandbox, strictly, as Template.render would."""

from __future__ import annotations

from datetime import UTC, datetime
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default

import pytest

from core.messages.compose import Composer, Draft, Templates
from core.smtp_profiles import ProfileSettings
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


MARKUP_NAME = "Tom <script>alert(1)</script> & Söns"


def test_an_html_template_escapes_every_value() -> None:
    values = {**VALUES, "customer": {**VALUES["customer"], "name": MARKUP_NAME}}
    assert render("<p>{{ customer.name }}</p>", values, html=True) == (
        "<p>Tom &lt;script&gt;alert(1)&lt;/script&gt; &amp; Söns</p>"
    )


def test_an_html_template_keeps_markup_its_author_marks_safe() -> None:
    values = {**VALUES, "customer": {**VALUES["customer"], "attributes": {"sig": "<b>A</b>"}}}
    assert render("{{ customer.attributes.sig | safe }}", values, html=True) == "<b>A</b>"


def test_a_text_template_is_not_escaped() -> None:
    values = {**VALUES, "customer": {**VALUES["customer"], "name": MARKUP_NAME}}
    assert render("Dear {{ customer.name }}", values) == f"Dear {MARKUP_NAME}"


def test_an_html_template_renders_in_the_sandbox_too() -> None:
    with pytest.raises(RenderError, match="SecurityError"):
        render("{{ customer.__class__.__mro__ }}", VALUES, html=True)


def test_a_customer_s_markup_is_text_in_the_html_part_and_as_it_is_in_the_text_part() -> None:
    templates = Templates(
        definition_id="d",
        subject="Hello {{ customer.name }}",
        text="Dear {{ customer.name }},",
        html="<p>Dear {{ customer.name }},</p>",
        organisation=VALUES["organisation"],
    )
    profile = ProfileSettings(
        id="p",
        host="127.0.0.1",
        port=25,
        security="none",
        username=None,
        password_env=None,
        from_address="billing@example.com",
        from_name=None,
        max_connections=1,
        rate_per_second=None,
        tls_verify=True,
        ca_file=None,
        timeout_seconds=10,
    )
    values = {**VALUES, "customer": {"id": "C1", "name": MARKUP_NAME}}
    draft = Draft(1, "<m1@example.com>", "tom@example.org", "Tom", values)
    envelope = Composer(1, profile, templates).build(draft, datetime(2026, 12, 1, tzinfo=UTC))
    message = message_from_bytes(envelope.data, policy=default)
    assert isinstance(message, EmailMessage)
    html = message.get_body(("html",))
    text = message.get_body(("plain",))
    assert html is not None and text is not None
    assert html.get_content().strip() == (
        "<p>Dear Tom &lt;script&gt;alert(1)&lt;/script&gt; &amp; Söns,</p>"
    )
    assert text.get_content().strip() == f"Dear {MARKUP_NAME},"
    assert message["Subject"] == f"Hello {MARKUP_NAME}"

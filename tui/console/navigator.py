"""The screen for each place: the one module that knows every screen of the console.

Only the app imports it; screens ask for a place (``Console.visit``) and never
import one another.
"""

from __future__ import annotations

from typing import Any, assert_never

from textual.screen import Screen

from tui.console import places
from tui.console.bounces_screen import BouncesScreen, ReportScreen
from tui.console.customer_screen import CustomerScreen
from tui.console.message_screen import MessageScreen
from tui.console.plan_screen import DefinitionsScreen, PlanScreen
from tui.console.profile_screen import ProfileScreen
from tui.console.profiles_screen import ProfilesScreen
from tui.console.routines_screen import RoutinesScreen
from tui.console.run_screen import RunScreen
from tui.console.runs_screen import RunsScreen


def screen_for(place: places.Place) -> Screen[Any]:
    """A new screen showing ``place``."""
    match place:
        case places.Runs():
            return RunsScreen()
        case places.Run(run_id):
            return RunScreen(run_id)
        case places.RecipientMessage(run_id, position, message_id):
            return MessageScreen(run_id, position, message_id)
        case places.Customer(customer_id, definition, at, recipient):
            return CustomerScreen(customer_id, definition=definition, at=at, recipient=recipient)
        case places.Definitions():
            return DefinitionsScreen()
        case places.Plan(definition_id, at):
            return PlanScreen(definition_id, at)
        case places.Profiles():
            return ProfilesScreen()
        case places.Profile(profile_id):
            return ProfileScreen(profile_id)
        case places.Routines():
            return RoutinesScreen()
        case places.Bounces():
            return BouncesScreen()
        case places.Report(report_id):
            return ReportScreen(report_id)
        case _:
            assert_never(place)

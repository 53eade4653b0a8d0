"""Where an SMTP profile's password comes from: the environment, or the OS keyring.

msgrun never stores a password itself: a profile names the environment
variable that holds it (``password_env``). Where ``MSGRUN_KEYRING=1`` is set,
a variable that is not set is looked up in the OS keyring instead: service
``msgrun``, the variable's name as the account (profiles that share a
variable share the password). ``msgrun smtp password PROFILE`` puts it there.

The keyring is asked only when configured: on a desktop, asking it may open
an unlock prompt, and on a server without one there is no keyring at all.
"""

from __future__ import annotations

from collections.abc import Mapping

from core import settings
from core.suggested import command

SERVICE = "msgrun"


class KeyringUnavailable(Exception):
    """There is no OS keyring here, or it refused."""


def find_password(password_env: str, environ: Mapping[str, str]) -> str | None:
    """The password: the environment variable, else (when configured) the keyring."""
    value = environ.get(password_env)
    if value:
        return value
    if not settings.keyring_enabled(environ):
        return None
    try:
        import keyring

        return keyring.get_password(SERVICE, password_env) or None
    except Exception:  # no keyring here, or it refused: as if nothing were stored
        return None


def source(password_env: str, environ: Mapping[str, str]) -> str | None:
    """Where the password would be read from now: ``env``, ``keyring``, or None (nowhere)."""
    if environ.get(password_env):
        return "env"
    if find_password(password_env, environ):
        return "keyring"
    return None


def missing(password_env: str, environ: Mapping[str, str]) -> str:
    """Where the password was looked for, for a message saying it was not found."""
    if settings.keyring_enabled(environ):
        return (
            f"the environment variable {password_env} is not set and the OS keyring has no "
            f"password for it"
        )
    return f"the environment variable {password_env} is not set"


def how_to_provide(password_env: str, profile_id: str) -> str:
    """What to do about a missing password."""
    return (
        f"set {password_env} to the account's password where msgrun runs, or store it in the "
        f"OS keyring ({command(f'smtp password {profile_id}')}) and set {settings.KEYRING}=1"
    )


def store_password(password_env: str, password: str) -> str:
    """Put the password in the OS keyring; the keyring's name. KeyringUnavailable if none."""
    try:
        import keyring
        from keyring.errors import KeyringError

        backend = keyring.get_keyring()
        keyring.set_password(SERVICE, password_env, password)
    except KeyringError as error:
        raise KeyringUnavailable(str(error).strip().splitlines()[0]) from None
    except Exception as error:  # a backend's own failure (D-Bus away, locked, …)
        raise KeyringUnavailable(f"{type(error).__name__}: {error}") from None
    name = getattr(backend, "name", None) or type(backend).__name__
    return str(name)

"""Exceptions llmmeter raises to its users.

Hierarchy (deliberately small)::

    ValueError
     └── ConfigError   bad configuration, raised by ``instrument()`` and never mid-request

Everything else that goes wrong inside llmmeter is caught by the internal guard, logged once,
and never reaches the application.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """Invalid llmmeter configuration.

    The message names where the value came from (argument, environment variable or file),
    the key, what was expected, and what was found.
    """

"""shellfish: a local-first terminal assistant.

Importing this package does no work: no model loading, no network clients, no heavy imports.
"""

from __future__ import annotations

__version__ = "0.1.0"

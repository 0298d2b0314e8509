from __future__ import annotations

from shellfish.cli import main

raise SystemExit(main())

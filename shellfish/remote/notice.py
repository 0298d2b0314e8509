"""The first-use notice: the first time an endpoint is used, show exactly what is sent.

Which endpoints have been shown is remembered in `<data dir>/remote-notice.json`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from shellfish.events import Status

NOTICE_FILE = "remote-notice.json"


def _seen(path: Path) -> list[str]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    seen = data.get("endpoints") if isinstance(data, dict) else None
    return [str(s) for s in seen] if isinstance(seen, list) else []


def is_first_use(data_dir: Path, endpoint: str) -> bool:
    return endpoint not in _seen(data_dir / NOTICE_FILE)


def remember_use(data_dir: Path, endpoint: str) -> None:
    """Mark `endpoint` as shown; failing to write only means the notice shows again."""
    path = data_dir / NOTICE_FILE
    seen = _seen(path)
    if endpoint in seen:
        return
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps({"endpoints": [*seen, endpoint]}), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        pass


def first_use_notice(endpoint: str, payload: dict[str, Any]) -> Status:
    """A Status event whose message shows the request body exactly as it will be sent."""
    body = json.dumps(payload, indent=2, ensure_ascii=False)
    message = (
        f"First use of the remote endpoint {endpoint}. This is exactly what is sent "
        f"(after redaction); nothing is sent unless remote.policy allows it:\n{body}"
    )
    return Status(message, {"notice": "remote_first_use", "endpoint": endpoint, "sent": payload})

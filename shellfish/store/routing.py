"""Model routing: which installed model answers a task.

1. `settings.models.<task>` when set (config `[models] suggest = "..."`, or
   `SHELLFISH_MODELS_SUGGEST`) - it must be installed;
2. else `settings.models.default`, when it is installed and lists the task;
3. else the best installed model whose manifest lists the task (catalog order of preference
   below, then name);
4. else ModelNotFound naming the model to pull.
"""

from __future__ import annotations

from shellfish.config import TASKS, Settings
from shellfish.errors import ModelNotFound, UsageError
from shellfish.store.store import Store

# Preference among installed models, best first (larger / instruction-tuned first).
PREFERENCE = {
    "suggest": (
        "qwen2.5-coder-0.5b-shellfish",
        "qwen2.5-coder-0.5b-instruct",
        "smollm2-135m-instruct",
    ),
    "explain": (
        "qwen2.5-coder-0.5b-instruct",
        "qwen2.5-coder-0.5b-shellfish",
        "smollm2-135m-instruct",
        "flan-t5-base",
        "flan-t5-small",
    ),
    "ask": ("qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-0.5b-shellfish", "smollm2-135m-instruct"),
    "translate": (
        "flan-t5-base",
        "flan-t5-small",
        "t5-small",
        "qwen2.5-coder-0.5b-instruct",
        "qwen2.5-coder-0.5b-shellfish",
    ),
    "prompt": (
        "qwen2.5-coder-0.5b-instruct",
        "qwen2.5-coder-0.5b-shellfish",
        "smollm2-135m-instruct",
        "gpt2",
        "distilgpt2",
    ),
}
# What to suggest pulling when nothing fits.
RECOMMENDED = {
    "suggest": "qwen2.5-coder-0.5b-shellfish",
    "explain": "qwen2.5-coder-0.5b-instruct",
    "ask": "qwen2.5-coder-0.5b-instruct",
    "translate": "flan-t5-base",
    "prompt": "qwen2.5-coder-0.5b-instruct",
}


def pick_model(task: str, settings: Settings, store: Store) -> str:
    """Name of the installed model to use for `task` (raises ModelNotFound with what to pull)."""
    if task not in TASKS:
        raise UsageError(f"unknown task {task!r}", hint=f"tasks: {', '.join(TASKS)}")
    configured = str(getattr(settings.models, task, "") or "")
    if configured:
        return store.resolve(configured).name  # raises "not installed - run pull" itself
    installed = {m.name: m for m in store.installed() if not m.missing_files()}
    default = settings.models.default
    if default:
        model = installed.get(default)
        if model is None:
            desc = store.catalog.find(default)
            model = installed.get(desc.name) if desc else None
        if model is not None and task in model.tasks:
            return model.name
    able = [m for m in installed.values() if task in m.tasks]
    if able:
        order = PREFERENCE.get(task, ())

        def rank(name: str) -> tuple[int, str]:
            base = name.removesuffix("-int8")
            return (order.index(base) if base in order else len(order), name)

        return min((m.name for m in able), key=rank)
    wanted = RECOMMENDED.get(task, default)
    raise ModelNotFound(
        f"no installed model can {task}",
        hint=f"run `shellfish models pull {wanted}` (or `shellfish setup`)",
    )

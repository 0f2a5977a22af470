"""How the project reads ``conf/``: the arguments of Kedro's ``OmegaConfigLoader``.

One place for both readers: the project settings (``kedro run``) and the dry-run check
(``python -m magistral_kedro.check``), so that the check sees the parameters a run would. Plain
data that imports nothing of the project, so both readers import it without a cycle.
"""

from __future__ import annotations

from typing import Any

CONFIG_LOADER_ARGS: dict[str, Any] = {
    "base_env": "base",
    "default_run_env": "local",
    # An env (gpu, micro, local) overrides single keys of base, not whole sections.
    "merge_strategy": {"parameters": "soft"},
    "config_patterns": {
        "parameters": ["parameters*", "parameters*/**", "**/parameters*"],
        "mlflow": ["mlflow*", "mlflow*/**", "**/mlflow*"],
    },
}

"""The shipped parameters of an environment, as the project's typed sections."""

from __future__ import annotations

from typing import Any

from magistral_kedro.check import load_parameters
from tests.support.paths import PROJECT_ROOT

CONF = PROJECT_ROOT / "conf"


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Kedro's soft merge: an override replaces single keys, not whole sections."""
    out = dict(base)
    for key, value in override.items():
        out[key] = (
            merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict)
            else value
        )  # fmt: skip
    return out


def raw_parameters(env: str = "base", **overrides: Any) -> dict[str, Any]:
    """conf/base/parameters*.yml, soft-merged with conf/<env>/ (as `kedro run --env` reads
    them, globals resolved), then ``overrides``."""
    return merge(load_parameters(CONF, env, {}), overrides)


def raw_catalog() -> dict[str, Any]:
    """conf/base/catalog.yml as Kedro reads it, with paths relative to the project."""
    from kedro.config import OmegaConfigLoader

    return dict(OmegaConfigLoader(str(CONF), base_env="base", default_run_env="base")["catalog"])

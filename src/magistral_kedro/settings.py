"""Project settings. https://docs.kedro.org/en/stable/kedro_project_setup/settings.html"""

import warnings

from kedro.config import OmegaConfigLoader

from magistral_kedro import config_loader
from magistral_kedro.hooks import (
    DatasetInputsHook,
    ParameterLoggingHook,
    ParameterRulesHook,
    QuietStartHook,
    RankZeroWritesHook,
    SystemMetricsHook,
)
from magistral_kedro.training import distributed

# Kedro's config loader calls an omegaconf function omegaconf has deprecated: once per loader,
# several times a run, and nothing a user of this project can act on.
warnings.filterwarnings("ignore", message="register_new_resolver", category=UserWarning)

HOOKS = (
    QuietStartHook(),
    SystemMetricsHook(),
    ParameterRulesHook(),
    ParameterLoggingHook(),
    DatasetInputsHook(),
    RankZeroWritesHook(),
)
# Under a multi-process launch only rank 0 opens an MLflow run and writes kedro-viz's run stats
# (magistral_kedro.launch). Names as the plugins' distributions spell them.
DISABLE_HOOKS_FOR_PLUGINS = () if distributed.is_main() else ("kedro_mlflow", "kedro-viz")

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = config_loader.CONFIG_LOADER_ARGS

"""Template pipelines instantiated under a namespace (the difficulty filter's two stages, the
SFT and RL models' evaluations): kedro-viz draws each instance as a collapsible group and
``kedro run --namespaces <namespace>`` runs one.

Each instance reads its own settings from the top-level parameters section named like its
namespace (``difficulty_stage1:``, ``sft_eval:``...), typed by the template's node functions and
validated before any node runs; the parameters every pipeline shares keep their names.
"""

from kedro.pipeline import Pipeline

#: Parameters an instance shares with the rest of the project (not namespaced).
SHARED_PARAMETERS = ("prompt", "reward", "generation", "seed")


def instantiate(
    template: Pipeline,
    namespace: str,
    section: str,
    inputs: dict[str, str],
    outputs: dict[str, str],
) -> Pipeline:
    """``template`` under ``namespace``: its ``params:<section>`` is the parameters section
    ``<namespace>``; :data:`SHARED_PARAMETERS` keep their names; ``inputs`` and ``outputs`` map
    the template's free inputs and its outputs to project datasets. Every other dataset is
    prefixed with the namespace (``<namespace>.<name>``)."""
    shared = {f"params:{name}": f"params:{name}" for name in SHARED_PARAMETERS}
    return Pipeline(
        template,
        namespace=namespace,
        inputs=inputs,
        outputs=outputs,
        parameters={f"params:{section}": f"params:{namespace}", **shared},
    )

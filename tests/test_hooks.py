"""Project hooks that depend on dataset names: rank 0 alone writes, namespaced datasets included."""

from kedro.io import DataCatalog, MemoryDataset

from magistral_kedro import hooks
from magistral_kedro.pipelines.curation import create_pipeline as curation
from magistral_kedro.pipelines.rl import create_pipeline as rl
from magistral_kedro.pipelines.sft import create_pipeline as sft
from tests.params import raw_catalog


def test_ranks_after_the_first_write_nothing_namespaced_outputs_included(monkeypatch):
    catalog = DataCatalog.from_config(raw_catalog())
    pipeline = curation() + sft() + rl()
    written = {"difficulty_stage1.pass_rates", "difficulty_stage2.suspects", "sft_eval_samples"}
    assert written <= pipeline.all_outputs()
    assert all(not isinstance(catalog.get(name), MemoryDataset) for name in written)
    monkeypatch.setattr(hooks.distributed, "is_main", lambda: False)
    hooks.RankZeroWritesHook().before_pipeline_run(pipeline=pipeline, catalog=catalog)
    for name in pipeline.all_outputs():
        assert isinstance(catalog.get(name), MemoryDataset), name

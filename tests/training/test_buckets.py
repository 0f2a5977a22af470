"""A model's weights in buckets: every state-dict name once, whole layers, sizes bounded."""

from magistral_kedro.models import build_tiny_model
from magistral_kedro.training.buckets import weight_buckets
from tests.support.models import MICRO_MODEL


def test_buckets_cover_the_state_dict_and_never_split_a_layer(tokenizer):
    model = build_tiny_model(tokenizer, MICRO_MODEL, seed=0)
    layer_bytes = 4 * sum(
        p.numel() for n, p in model.named_parameters() if n.startswith("model.layers.0.")
    )
    buckets = list(weight_buckets(model, limit=1))  # smaller than anything: a unit a bucket
    names = [name for bucket in buckets for _, names in bucket for name in names]
    assert sorted(names) == sorted(model.state_dict())  # lm_head.weight too (tied)
    for layer in range(MICRO_MODEL.num_layers):
        prefix = f"model.layers.{layer}."
        holding = [b for b in buckets if any(n.startswith(prefix) for _, ns in b for n in ns)]
        assert len(holding) == 1, f"layer {layer} split over {len(holding)} buckets"
    sizes = [sum(4 * t.numel() for t, _ in b) for b in weight_buckets(model, limit=layer_bytes)]
    assert len(sizes) > 1 and max(sizes) <= 4 * model.model.embed_tokens.weight.numel()

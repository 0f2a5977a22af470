"""The categorical draw: the first token whose float64 cumulative weight exceeds a uniform
draw scaled by the total, whatever way the cumulative sum is computed."""

import numpy as np
import torch

from magistral_kedro.generation.sampler import categorical


def test_the_draw_is_the_first_token_past_a_scaled_uniform_in_float64():
    weights = (torch.randn(16, 5000, generator=torch.Generator().manual_seed(3)) * 4).exp()
    drawn = categorical(weights, torch.Generator().manual_seed(7))
    # numpy's sequential float64 sum, against the same uniforms the draw takes from the seed
    cumulative = np.cumsum(weights.numpy().astype(np.float64), axis=-1)
    uniform = torch.rand(16, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    targets = uniform.numpy()[:, 0] * cumulative[:, -1]
    expected = [
        int(np.searchsorted(row, u, side="right"))
        for row, u in zip(cumulative, targets, strict=True)
    ]
    assert drawn.tolist() == expected
    assert len(set(expected)) > 8  # the draws differ between rows: the check can tell them apart

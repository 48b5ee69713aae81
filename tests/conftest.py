import os
import sys
import warnings

import pytest
import torch

torch.set_num_threads(int(os.environ.get("SB3_DREAMER_TEST_THREADS", "1")))  # tiny models: 1 is fastest
sys.path.insert(0, os.path.dirname(__file__))

#: A model small enough to train in a blink.
TINY = dict(deter_size=16, hidden_size=16, stoch_size=4, classes=4, mlp_units=16, mlp_layers=1, cnn_depth=4)
#: Arguments that make a few hundred steps of training cheap.
FAST = dict(learning_starts=40, batch_size=4, sequence_length=8, imagination_horizon=3, train_freq=4)
#: The same for DreamerV3, whose knob is train_ratio: 8 replayed steps per env step = a 4 x 8 update every 4 steps.
FAST_V3 = dict(learning_starts=40, batch_size=4, sequence_length=8, imagination_horizon=3, train_ratio=8)


def fast(cls: type) -> dict:
    """FAST arguments for a Dreamer class."""
    from sb3_dreamer import DreamerV3

    return dict(FAST_V3 if issubclass(cls, DreamerV3) else FAST)


@pytest.fixture(params=["DreamerV2", "DreamerV3"])
def algo(request):
    """Each Dreamer algorithm in turn: the shared tests run on both."""
    import sb3_dreamer

    return getattr(sb3_dreamer, request.param)


@pytest.fixture(autouse=True)
def _no_gym_warnings():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Monitor.*")
        yield


@pytest.fixture
def per_step_weight_grads(monkeypatch):
    """A call switches ``RSSM.observe``'s deferred weight gradients off for the rest of the test,
    leaving autograd's per-step products and sums (the reference they must equal)."""
    from sb3_dreamer.common import rssm
    from sb3_dreamer.common.kernels import DeferredWeightGrads

    class PerStep(DeferredWeightGrads):
        def __init__(self, layers):
            super().__init__(layers)
            self.active = False

    return lambda: monkeypatch.setattr(rssm, "DeferredWeightGrads", PerStep)

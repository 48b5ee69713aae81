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


@pytest.fixture(autouse=True)
def _no_gym_warnings():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Monitor.*")
        yield

"""The loss penalties: squared error (mse) and Huber (the default): quadratic up to huber_delta,
linear beyond, so that large errors (often label noise) pull no harder than the typical ones."""

import pytest
import torch

from mlff.train import TrainConfig
from mlff.train.loss import _penalty


def test_huber_is_quadratic_below_delta_and_linear_above():
    diff = torch.tensor([0.0, 0.004, -0.004, 0.03, -0.5], dtype=torch.float64)
    huber = _penalty(diff, "huber", 0.01)
    expected = torch.tensor([0.0, 0.5 * 0.004 ** 2, 0.5 * 0.004 ** 2, 0.01 * (0.03 - 0.005), 0.01 * (0.5 - 0.005)],
                            dtype=torch.float64)
    torch.testing.assert_close(huber, expected, rtol=1e-12, atol=0)
    torch.testing.assert_close(_penalty(diff, "mse", 0.01), diff.square(), rtol=0, atol=0)


def test_default_loss_is_huber():
    config = TrainConfig(train_file="x.extxyz")
    assert config.loss == "huber" and config.huber_delta == pytest.approx(0.01)

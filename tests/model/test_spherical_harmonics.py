"""The edge harmonics of a model file (traced, unrolled up to l_max) equal e3nn's, which the model
uses in Python, and the file holds no other harmonics code."""

import zipfile

import pytest
import torch
from e3nn import o3
from e3nn.util.jit import compile as e3nn_compile

import mlff
from mlff.nn.spherical_harmonics import SphericalHarmonics


def _vectors(dtype):
    generator = torch.Generator().manual_seed(3)
    v = torch.randn(400, 3, dtype=dtype, generator=generator) * 2.0
    v[0] = 0.0                                   # a zero vector: Y_{l>0} = 0, as e3nn
    v[1] = torch.tensor([1e-9, -2e-9, 3e-9], dtype=dtype)
    v[2] = torch.tensor([0.0, 0.0, -1.5], dtype=dtype)   # along an axis
    return v


@pytest.mark.parametrize("l_max", [0, 1, 2, 3, 4, 6])
def test_traced_harmonics_and_their_gradients_equal_e3nn(l_max):
    irreps = o3.Irreps.spherical_harmonics(l_max)
    reference = o3.SphericalHarmonics(irreps, normalize=True, normalization="component")
    module = SphericalHarmonics(irreps)
    traced = e3nn_compile(module)
    assert isinstance(traced, torch.jit.ScriptModule)
    assert "CONSTANTS" not in traced.code       # number literals: no tensor left on the CPU beside GPU inputs
    v = _vectors(torch.float64).requires_grad_(True)
    weights = torch.randn(irreps.dim, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    expected = reference(v)
    if l_max > 0:
        (expected_grad,) = torch.autograd.grad((expected * weights).sum(), v)
    for candidate in (traced, module):          # the model file's code, and Python's
        values = candidate(v)
        assert values.shape == (400, irreps.dim) and values.dtype == torch.float64
        torch.testing.assert_close(values, expected, rtol=0, atol=1e-13)
        if l_max == 0:                          # Y_0 = 1: no gradient, as in e3nn
            assert not values.requires_grad
            continue
        (grad,) = torch.autograd.grad((values * weights).sum(), v)
        torch.testing.assert_close(grad[1:], expected_grad[1:], rtol=1e-12, atol=1e-12)
    v32 = _vectors(torch.float32)
    out = traced(v32)
    assert out.dtype == torch.float32                       # its constants do not promote float32 inputs
    torch.testing.assert_close(out, reference(v32), rtol=0, atol=1e-5)


def test_harmonics_other_than_each_l_once_are_refused():
    with pytest.raises(ValueError, match="every l from 0 to l_max once"):
        SphericalHarmonics(o3.Irreps("0e + 2e"))


def test_model_file_holds_the_unrolled_harmonics_only(tmp_path):
    """e3nn's scripted harmonics spell out every l to 11; TorchScript compiles that code at each
    load. The file holds the traced code for l <= l_max instead."""
    model = mlff.build_model(mlff.ModelConfig.preset("small"), species=["Cu"])
    path = mlff.deploy(model, tmp_path / "model.pt")
    names = zipfile.ZipFile(path).namelist()
    assert any("code/__torch__/mlff/nn/spherical_harmonics" in name for name in names)
    assert not any("_spherical_harmonics" in name for name in names), [n for n in names if "harmonics" in n]

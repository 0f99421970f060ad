"""What reading a model file needs, kept apart from the model code (e3nn, the layers), so that
evaluating a file (``mlff.load``, the ASE calculator) does not import what writing one does."""

import contextlib
import warnings

FORMAT_VERSION = 1


@contextlib.contextmanager
def torchscript_quiet():
    """TorchScript is the format libtorch engines load; torch >= 2.10 warns it is deprecated."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.\w+` is deprecated")
        yield

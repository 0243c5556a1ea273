"""``python -m hpe_jax.export``: each format is written, loaded by its own runtime
(``jax.export.deserialize``, onnxruntime) and run at a batch size other than any used when
exporting, and matches ``load_model``'s network to 1e-4 degrees.

The network is randomly initialised at 64 x 64, of the test-only variant ``tiny``
(``tiny_network``): converting the full 's' to ONNX alone takes over 30 s on the 2-core test
machine.
"""

import importlib.util

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from tiny_network import tiny_checkpoint

import hpe_jax
from hpe_jax import export

SIZE = 64
BATCH = 3
HAS_FLATBUFFERS = importlib.util.find_spec("flatbuffers") is not None
HAS_ONNX = all(importlib.util.find_spec(m) for m in ("jax2onnx", "onnxruntime"))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    with tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "1", SIZE, seed=3) as path:
        yield path


@pytest.fixture(scope="module")
def reference(checkpoint):
    """(images (3, 64, 64, 3), angles (3, 3) degrees) of ``load_model``'s network, plain jit."""
    graphdef, state = nnx.split(hpe_jax.load_model(checkpoint))
    images = np.random.default_rng(0).normal(size=(BATCH, SIZE, SIZE, 3)).astype(np.float32)
    forward = jax.jit(lambda x: hpe_jax.decode_angles(nnx.merge(graphdef, state)(x)))
    return images, np.asarray(forward(jnp.asarray(images)))


@pytest.mark.skipif(not HAS_FLATBUFFERS, reason="needs the 'export' extra")
def test_stablehlo_round_trip(checkpoint, reference, tmp_path):
    path = tmp_path / "hpe.stablehlo"
    path.write_bytes(b"an older export")
    assert export.main(["--checkpoint", str(checkpoint), "--format", "stablehlo",
                        "--output", str(path), "--overwrite"]) == 0  # fmt: skip
    assert list(tmp_path.iterdir()) == [path]  # replaced, no partial file left
    exported = jax.export.deserialize(bytearray(path.read_bytes()))
    assert exported.platforms == ("cpu", "cuda", "tpu")
    assert str(exported.in_avals[0].shape[0]) == "b"  # symbolic batch size
    images, expected = reference
    np.testing.assert_allclose(np.asarray(exported.call(images)), expected, atol=1e-4)


@pytest.mark.skipif(not HAS_ONNX, reason="needs the 'export' extra")
def test_onnx_round_trip(checkpoint, reference, tmp_path):
    import onnxruntime

    path = tmp_path / "hpe.onnx"
    assert export.main(["--checkpoint", str(checkpoint), "--format", "onnx",
                        "--output", str(path)]) == 0  # fmt: skip
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["images"]
    images, expected = reference
    (angles,) = session.run(["angles"], {"images": images})
    np.testing.assert_allclose(angles, expected, atol=1e-4)


def test_bad_arguments_are_one_line(checkpoint, tmp_path, capsys):
    common = ["--checkpoint", str(checkpoint), "--format", "stablehlo"]
    existing = tmp_path / "hpe.stablehlo"
    existing.write_bytes(b"kept")
    cases = [
        ([*common, "--output", str(tmp_path)], "is a folder"),
        ([*common, "--output", str(existing)], "exists; not replaced"),
        ([*common, "--output", str(tmp_path / "x"), "--platforms", "cpu,gpu"], "--platforms"),
        (["--checkpoint", str(tmp_path / "none"), "--format", "onnx", "--output",
          str(tmp_path / "y")], "does not exist"),
    ]  # fmt: skip
    for argv, message in cases:
        assert export.main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1, err
    assert existing.read_bytes() == b"kept"

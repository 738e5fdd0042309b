"""The factorised DFT front end (mos.model.frontend.Spectrum, LogMel): against a float64 numpy
rfft of the framed windowed signal, alone vs zero-padded in a batch, through ONNX Runtime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from mos.export.graph import front_end  # noqa: E402
from mos.model import ModelConfig  # noqa: E402
from mos.model.frontend import LogMel, Spectrum, decimation  # noqa: E402

# (n_fft, hop, padding): LogMel's default, CLAP's (reflect-padded beforehand, so 0 here),
# AISFX's, 512/160 (16 x 32), and a prime n_fft the factorisation cannot do (direct DFT conv).
SHAPES = [(400, 160, 200), (1024, 480, 0), (2048, 1024, 1024), (512, 160, 0), (401, 160, 200)]


def reference_power(x: np.ndarray, window: np.ndarray, n_fft: int, hop: int, padding: int) -> np.ndarray:
    """[F, T] float64 power of frames x_padded[i*hop : i*hop + len(window)], windowed and
    zero-padded to n_fft."""
    xp = np.pad(x.astype(np.float64), (padding, padding))
    t = (len(xp) - len(window)) // hop + 1
    frames = np.stack([xp[i * hop : i * hop + len(window)] for i in range(t)]) * window
    return (np.abs(np.fft.rfft(frames, n=n_fft, axis=1)) ** 2).T


def natural(spectrum: Spectrum, power: torch.Tensor) -> np.ndarray:
    """[B, rows, T] in the spectrum's row order -> [B, F, T] numpy in bin order."""
    rows = spectrum.rows.numpy()
    out = np.zeros((power.shape[0], spectrum.n_freqs, power.shape[2]))
    out[:, rows[rows >= 0]] = power.numpy()[:, rows >= 0]
    return out


def test_decimation_rule() -> None:
    assert decimation(400, 160) == 20  # 20 x 20
    assert decimation(1024, 480) == 32
    assert decimation(2048, 1024) == 32
    assert decimation(401, 160) is None  # prime n_fft: direct DFT conv
    assert decimation(512, 162) is None  # gcd 2: no factor >= 4


@pytest.mark.parametrize("n_fft,hop,padding", SHAPES)
def test_power_matches_float64_rfft(n_fft: int, hop: int, padding: int) -> None:
    window = torch.hann_window(n_fft, periodic=True, dtype=torch.float64)
    spectrum = Spectrum(window, n_fft, hop)
    assert spectrum.a == (decimation(n_fft, hop) or 0)
    rows = spectrum.rows.numpy()
    assert sorted(rows[rows >= 0].tolist()) == list(range(n_fft // 2 + 1))  # every bin exactly once
    rng = np.random.default_rng(n_fft)
    for n in (n_fft + 1, n_fft + 3 * hop + 7, 16001):
        x = (rng.standard_normal(n) * 0.1).astype(np.float32)
        got = natural(spectrum, spectrum.power(torch.from_numpy(x)[None], padding))[0]
        ref = reference_power(x, window.numpy(), n_fft, hop, padding)
        assert got.shape == ref.shape
        # float32 sums of n_fft terms: measured <= 5.3e-7 of the largest power (direct conv 9e-7)
        assert np.abs(got - ref).max() <= 1e-5 * ref.max(), (n, np.abs(got - ref).max() / ref.max())
        assert not (spectrum.power(torch.from_numpy(x)[None], padding)[0, rows < 0] != 0).any()


def test_shorter_window_is_zero_padded_dft() -> None:
    window = torch.hann_window(300, periodic=True, dtype=torch.float64)
    spectrum = Spectrum(window, 400, 160)
    assert spectrum.a == 20
    x = (np.random.default_rng(0).standard_normal(4001) * 0.1).astype(np.float32)
    got = natural(spectrum, spectrum.power(torch.from_numpy(x)[None], 200))[0]
    ref = reference_power(x, window.numpy(), 400, 160, 200)
    assert np.abs(got - ref).max() <= 1e-5 * ref.max()


def reference_log_mel(fe: LogMel, cfg: ModelConfig, x: np.ndarray) -> np.ndarray:
    window = torch.hann_window(cfg.win_length, periodic=True, dtype=torch.float64).numpy()
    power = reference_power(x, window, cfg.n_fft, cfg.hop_length, cfg.win_length // 2)
    return np.log(fe.mel_fbank.double().numpy().T @ power + 1e-6)


def batch(lengths: list[int], seed: int = 1) -> tuple[torch.Tensor, torch.Tensor, list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    clips = [(rng.standard_normal(n) * 0.1).astype(np.float32) for n in lengths]
    wave = np.zeros((len(clips), max(lengths)), np.float32)
    for i, c in enumerate(clips):
        wave[i, : len(c)] = c
    wave[1, lengths[1] :] = 0.5  # garbage past a clip's length must not matter
    return torch.from_numpy(wave), torch.tensor(lengths), clips


@pytest.mark.parametrize("n_fft", [400, 512])  # 512: the first edge model's DFT (window 400)
def test_log_mel_alone_padded_and_reference(n_fft: int) -> None:
    cfg = ModelConfig(n_fft=n_fft)
    fe = LogMel(cfg).eval()
    assert set(fe.state_dict()) == {"feat_mean", "feat_std"}  # the DFT is no checkpoint state
    lengths = [16000, 4801, 399, 161, 1]
    wave, lens, clips = batch(lengths)
    with torch.no_grad():
        out, frames = fe.log_mel(wave, lens)
        for i, c in enumerate(clips):
            t = int(frames[i])
            assert t == len(c) // cfg.hop_length + 1
            alone, alone_frames = fe.log_mel(torch.from_numpy(c)[None], lens[i : i + 1])
            assert int(alone_frames[0]) == t and alone.shape[2] == t
            # measured: identical except the 1-sample clip (9.5e-7, as with the direct conv before)
            assert torch.allclose(alone[0], out[i, :, :t], atol=1e-5)
            ref = reference_log_mel(fe, cfg, c)
            assert np.abs(alone[0].numpy() - ref).max() <= 1e-4  # measured 1.2e-6


def test_onnx_runtime_matches_reference(tmp_path: Path) -> None:
    cfg = ModelConfig()
    fe = LogMel(cfg).eval()

    class Wrap(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fe = fe

        def forward(self, waveform: torch.Tensor, lengths: torch.Tensor):
            return self.fe.log_mel(waveform, lengths)

    path = tmp_path / "logmel.onnx"
    with torch.no_grad():
        torch.onnx.export(Wrap(), (torch.randn(2, 37000) * 0.1, torch.tensor([37000, 21000])), str(path),
                          opset_version=17, dynamo=False, input_names=["waveform", "lengths"],
                          output_names=["logmel", "frames"],
                          dynamic_axes={"waveform": {0: "batch", 1: "samples"}, "lengths": {0: "batch"},
                                        "logmel": {0: "batch", 2: "frames"}, "frames": {0: "batch"}})
    model = onnx.load(str(path))
    fe_nodes = front_end(model)  # what int8 and fp16 keep in fp32
    by_name = {n.name: n for n in model.graph.node}
    assert len(fe_nodes.dft_convs) == 1  # the stage-1 grouped conv
    group = next(a.i for a in by_name[fe_nodes.dft_convs[0]].attribute if a.name == "group")
    assert group == decimation(cfg.n_fft, cfg.hop_length)
    assert len(fe_nodes.matmuls) == 2  # stage 2 and the mel
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    lengths = [16000, 4801, 99999, 300, 7]  # batch and length differ from the export's
    wave, lens, clips = batch(lengths, seed=2)
    out, frames = session.run(None, {"waveform": wave.numpy(), "lengths": lens.numpy()})
    for i, c in enumerate(clips):
        t = int(frames[i])
        ref = reference_log_mel(fe, cfg, c)
        assert ref.shape[1] == t
        assert np.abs(out[i, :, :t] - ref).max() <= 1e-4  # measured 2.3e-6
        alone, _ = session.run(None, {"waveform": c[None], "lengths": np.array([len(c)])})
        assert np.abs(alone[0] - out[i, :, :t]).max() <= 1e-5  # measured 9.5e-7


def test_front_end_follows_values_read_inside_a_subgraph() -> None:
    """An If whose branch reads the log-mel (as a traced length check does) is front end; a Shape of
    it is not, and neither is anything past the next Conv."""
    from onnx import TensorProto, helper

    f32 = TensorProto.FLOAT
    branch = lambda name: helper.make_graph(  # noqa: E731
        [helper.make_node("Relu", ["mel"], [f"{name}_out"], name=f"{name}_relu")],
        name, [], [helper.make_tensor_value_info(f"{name}_out", f32, None)])
    nodes = [
        helper.make_node("Conv", ["waveform", "w_dft"], ["spec"], name="dft"),
        helper.make_node("MatMul", ["spec", "w_mel"], ["mel"], name="mel_matmul"),
        helper.make_node("Shape", ["mel"], ["mel_shape"], name="shape"),
        helper.make_node("Constant", [], ["flag"], name="flag",
                         value=helper.make_tensor("v", TensorProto.BOOL, [], [True])),
        helper.make_node("If", ["flag"], ["checked"], name="length_check",
                         then_branch=branch("then"), else_branch=branch("else")),
        helper.make_node("Conv", ["checked", "w_enc"], ["enc"], name="encoder_conv"),
        helper.make_node("Relu", ["enc"], ["out"], name="encoder_relu"),
    ]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("waveform", f32, [1, 1, 16])],
        [helper.make_tensor_value_info("out", f32, None)],
        initializer=[helper.make_tensor(n, f32, [1], [1.0]) for n in ("w_dft", "w_mel", "w_enc")])
    found = front_end(helper.make_model(graph))
    assert found.dft_convs == ["dft"]
    assert found.nodes == ["dft", "mel_matmul", "length_check"]
    assert found.matmuls == ["mel_matmul"]

"""Exact-zero density on hand-made activations, for every variant, and the report built from it."""

from __future__ import annotations

import json
import math
import sys
import warnings

import pytest
import torch
from torch import nn

from deft import DensityMonitor, DensityReport, measure_density


class _Passthrough(nn.Module):
    """An "MLP" of identities: its activation is exactly the tensor fed in for that layer."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Identity(), nn.Identity(), nn.Identity()


class Echo(nn.Module):
    """``forward(values [L, B, T, F])`` runs values[l] through layer l's activation module."""

    def __init__(self, num_layers: int = 2) -> None:
        super().__init__()
        self.layers = nn.ModuleList(_Passthrough() for _ in range(num_layers))
        self.scale = nn.Parameter(torch.ones(()))  # gives the model a device and a dtype

    def forward(self, values: torch.Tensor, attention_mask: torch.Tensor | None = None):
        return [
            layer.fc2(layer.act(layer.fc1(v))) for layer, v in zip(self.layers, values, strict=True)
        ]


LAYER_0 = [
    [[0, 0, 0, 0], [1, 0, 0, 0], [1, 1, 0, 0]],
    [[1, 1, 1, 1], [0, 0, 0, 0], [0, 0, 0, 0]],
]
LAYER_1 = [
    [[1e-7, 1e-5, 5e-4, 1.0], [0, 0, 0, 0], [2, 2, 2, 2]],
    [[1e-5, 0, 0, 0], [5e-4, 5e-4, 0, 0], [3, 3, 3, 3]],
]
VALUES = torch.tensor([LAYER_0, LAYER_1])  # [L=2, B=2, T=3, F=4]
MASK = torch.tensor([[1, 1, 0], [1, 0, 0]])

# Worked by hand (percent). reference: all 12 entries per sample; masked and thresholded: sample 0
# has 8 real entries (tokens 0-1), sample 1 has 4 (token 0).
EXPECTED_PER_LAYER = {
    "reference": [100 * (3 / 12 + 4 / 12) / 2, 100 * (8 / 12 + 7 / 12) / 2],
    "masked": [100 * (1 / 8 + 4 / 4) / 2, 100 * (4 / 8 + 1 / 4) / 2],
    "thresholded@1e-06": [56.25, 100 * (3 / 8 + 1 / 4) / 2],  # 1e-7 counts as zero
    "thresholded@0.0001": [56.25, 100 * (2 / 8 + 0 / 4) / 2],  # 1e-5 too
    "thresholded@0.001": [56.25, 100 * (1 / 8 + 0 / 4) / 2],  # and 5e-4
}


def _report(batches) -> DensityReport:
    return measure_density(Echo(), batches)


def test_every_variant_per_layer_and_mean_by_hand():
    report = _report([{"values": VALUES, "attention_mask": MASK}])
    assert report.layers == ["layers.0.act", "layers.1.act"]
    assert report.num_samples == 2
    assert report.dtype == "float32"
    for variant, expected in EXPECTED_PER_LAYER.items():
        assert report.variants[variant] == pytest.approx(expected), variant
        assert report.mean(variant) == pytest.approx(sum(expected) / 2), variant
    assert report.mean("reference") == pytest.approx((29.1666667 + 62.5) / 2)


def test_samples_are_averaged_alike_however_they_are_batched():
    one_by_one = [
        {"values": VALUES[:, b : b + 1], "attention_mask": MASK[b : b + 1]} for b in range(2)
    ]
    report = _report(one_by_one)
    assert report.num_samples == 2
    for variant, expected in EXPECTED_PER_LAYER.items():
        assert report.variants[variant] == pytest.approx(expected), variant


def test_without_a_mask_masked_equals_reference_and_empty_samples_are_skipped():
    report = _report([{"values": VALUES}])
    assert report.masked == pytest.approx(report.reference)
    # sample 1 has no real token: the masked density is sample 0's alone
    masked = _report([{"values": VALUES, "attention_mask": torch.tensor([[1, 1, 0], [0, 0, 0]])}])
    assert masked.masked == pytest.approx([100 * 1 / 8, 100 * 4 / 8])


def test_eval_mode_and_no_grad_during_measurement_and_modes_restored_after():
    model = Echo()
    model.train()
    model.layers[1].eval()
    seen = []
    model.layers[0].act.register_forward_hook(
        lambda m, i, o: seen.append((m.training, torch.is_grad_enabled()))
    )
    measure_density(model, [{"values": VALUES}])
    assert seen == [(False, False)]
    assert model.training
    assert model.layers[0].training
    assert not model.layers[1].training
    assert len(model.layers[0].act._forward_hooks) == 1  # only ours: the own monitor is gone


def test_an_existing_monitor_is_used_and_left_in_place():
    model = Echo()
    monitor = DensityMonitor(model)
    measure_density(model, [{"values": VALUES}], monitor=monitor)
    model(VALUES)
    assert list(monitor.activations) == ["layers.0.act", "layers.1.act"]


def test_the_dtype_the_activations_were_computed_in_is_stated():
    with pytest.warns(UserWarning, match=r"computed in bfloat16; .* measure a float32 copy"):
        report = _report([{"values": VALUES.to(torch.bfloat16)}])
    assert report.dtype == "bfloat16"


def test_float32_measurements_do_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _report([{"values": VALUES}]).dtype == "float32"


def test_reduction_relative_and_in_percentage_points_by_hand():
    base = DensityReport(
        ["a", "b"], ["encoder", "decoder"], [80.0, 40.0], [60.0, 40.0], {}, "float32", 4
    )
    ours = DensityReport(
        ["a", "b"], ["encoder", "decoder"], [40.0, 30.0], [30.0, 10.0], {}, "float32", 4
    )
    reduction = ours.reduction_vs(base)
    assert reduction["reference"]["relative_percent"] == pytest.approx(100 * (60 - 35) / 60)
    assert reduction["reference"]["percentage_points"] == pytest.approx(25.0)
    assert reduction["masked"]["relative_percent"] == pytest.approx(60.0)  # 50 → 20
    assert reduction["masked"]["per_layer_relative_percent"] == pytest.approx([50.0, 75.0])
    assert reduction["masked"]["per_layer_percentage_points"] == pytest.approx([30.0, 30.0])
    assert reduction["masked"]["groups"]["decoder"]["relative_percent"] == pytest.approx(75.0)
    other = DensityReport(["a", "c"], ["model"] * 2, [1.0, 1.0], [1.0, 1.0], {}, "float32", 1)
    with pytest.raises(ValueError, match="other layers"):
        ours.reduction_vs(other)


def test_report_to_dict_is_json_and_round_trips_with_its_baseline():
    baseline = _report([{"values": VALUES}])
    report = measure_density(
        Echo(), [{"values": VALUES * 0, "attention_mask": MASK}], baseline=baseline
    )
    data = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert data["mean"]["masked"] == 0.0
    assert data["reduction_vs_baseline"]["reference"]["relative_percent"] == pytest.approx(100.0)
    assert data["per_layer"]["thresholded@0.001"] == [0.0, 0.0]
    again = DensityReport.from_dict(data)
    assert again.to_dict() == data
    assert again.baseline.reference == pytest.approx(baseline.reference)


def test_unmeasurable_densities_become_null_in_json():
    report = _report([{"values": VALUES, "attention_mask": torch.zeros(2, 3)}])
    assert math.isnan(report.mean("masked"))
    data = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert data["per_layer"]["masked"] == [None, None]
    assert math.isnan(DensityReport.from_dict(data).masked[0])


def test_plot_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    baseline = _report([{"values": VALUES}])
    report = measure_density(Echo(), [{"values": VALUES * 0}], baseline=baseline)
    path = report.plot(tmp_path / "plots" / "density.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(KeyError, match="no variant"):
        report.plot(tmp_path / "x.png", variants=("nonsense",))


def test_plot_without_matplotlib_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r"deft-peft\[plot\]"):
        _report([{"values": VALUES}]).plot(tmp_path / "x.png")


def test_format_table_lists_layers_and_the_mean():
    table = _report([{"values": VALUES, "attention_mask": MASK}]).format_table()
    for expected in ("layers.0.act", "layers.1.act", "mean", "float32"):
        assert expected in table
    assert "46.88" in table  # masked mean (56.25 + 37.5) / 2


def test_no_batches_is_an_error():
    with pytest.raises(ValueError, match="no batches"):
        measure_density(Echo(), [])


def test_a_model_on_the_meta_device_is_a_clear_error_and_keeps_no_hooks():
    with torch.device("meta"):
        model = Echo()
    with pytest.raises(ValueError, match="measure_density: the model's parameters are on the meta"):
        measure_density(model, [torch.ones(2, 2, 3, 4)])
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def test_a_baseline_of_other_layers_is_refused_before_measuring():
    from peft_core.testing import TinyClassifier

    baseline = _report([{"values": VALUES, "attention_mask": MASK}])
    assert measure_density(Echo(), [{"values": VALUES}], baseline=baseline).baseline is baseline
    calls = []
    model = TinyClassifier(num_layers=2)
    model.register_forward_hook(lambda *args: calls.append(1))
    with pytest.raises(ValueError, match=r"baseline report has other layers.*layers\.0\.act"):
        measure_density(model, [{"input_ids": torch.randint(0, 32, (2, 4))}], baseline=baseline)
    assert calls == []  # refused before the first batch
    assert not model._forward_pre_hooks  # the monitor it made is removed


def test_tuple_batches_warn_that_no_mask_is_read():
    from peft_core.testing import TinyClassifier

    batches = [(torch.randint(0, 32, (2, 4)),), (torch.randint(0, 32, (2, 4)),)]
    with pytest.warns(UserWarning, match="tuple batch names none of its tensors") as caught:
        measure_density(TinyClassifier(num_layers=1), batches)
    assert len([w for w in caught if "names none" in str(w.message)]) == 1  # once per monitor

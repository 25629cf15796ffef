"""How the DEFT accuracy/density records read in benchmarks/REPORT.md: tables against the targets.

``RENDERERS`` maps a record-name prefix to its renderer, as benchmarks/report.py expects; each
renderer returns Markdown lines (and writes its per-layer plot to benchmarks/plots/ when
matplotlib is installed).
"""

from __future__ import annotations

from typing import Any

from benchmarks.plotting import figure_name, line_plot
from benchmarks.records import summary

# The targets, checked in the rendered tables.
REDUCTION_TARGET_PERCENT = 50.0  # relative density reduction vs the same PEFT method (masked)
ACCURACY_LOSS_TARGET_POINTS = 1.0  # at most this much test accuracy lost
OVERHEAD_TARGET_PERCENT = 10.0  # extra step time of the density loss
VARIANTS = ("reference", "masked", "thresholded@1e-06", "thresholded@0.0001", "thresholded@0.001")


def _mark(ok: bool) -> str:
    return "meets" if ok else "misses"


def _pm(summary: dict[str, float], scale: float = 1.0, digits: int = 2) -> str:
    return f"{scale * summary['mean']:.{digits}f} ± {scale * summary['std']:.{digits}f}"


def _variant_label(variant: str) -> str:
    # escaped: a bare | ends a Markdown table cell
    return variant.replace("thresholded@", "\\|a\\| > ")


def _ordered_methods(record: dict[str, Any]) -> dict[str, Any]:
    """JSON records sort their keys; put the methods back in the benchmark's order."""
    from benchmarks.deft.bench_minilm import METHODS

    rank = {name: index for index, name in enumerate(METHODS)}
    methods = record["eval_info"]["methods"]
    return dict(sorted(methods.items(), key=lambda item: rank.get(item[0], len(rank))))


def _layer_index(name: str) -> str:
    """``bert.encoder.layer.3.intermediate.intermediate_act_fn`` → ``3`` (the first number)."""
    return next((part for part in name.split(".") if part.isdigit()), name)


def minilm_section(record: dict[str, Any]) -> list[str]:
    """Accuracy, density (three variants, per layer), threshold baseline and loss overhead."""
    methods = _ordered_methods(record)
    lines = [
        "Test accuracy (%) and masked density (% non-zero MLP activations, real tokens only), "
        "mean ± std over seeds; the threshold baseline is the PEFT model with per-layer τ "
        "calibrated to the DEFT model's density.",
        "",
        "| method | lr | trainable | seeds | PEFT acc. | DEFT acc. | Δ acc. (points) "
        "| PEFT density | DEFT density | reduction (relative %) | reduction (points) "
        "| threshold baseline acc. | DEFT − baseline (points) | loss overhead (% step) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    verdicts = []
    for name, row in methods.items():
        accuracy, density = row["test_accuracy"], row["density_percent"]
        relative = row["reduction_relative_percent"]["masked"]
        change = row["accuracy_change_points"]
        versus = row["deft_minus_threshold_baseline_points"]
        overhead = (row.get("step_time") or {}).get("overhead_percent")
        lines.append(
            f"| {name} | {row['learning_rate']:g} | {row['trainable_params']:,} | {len(row['runs'])} "
            f"| {_pm(accuracy['peft'], 100)} | {_pm(accuracy['deft'], 100)} | {_pm(change)} "
            f"| {_pm(density['peft']['masked'])} | {_pm(density['deft']['masked'])} "
            f"| {_pm(relative)} | {_pm(row['reduction_percentage_points']['masked'])} "
            f"| {_pm(accuracy['threshold'], 100)} | {_pm(versus)} "
            f"| {'' if overhead is None else f'{overhead:.1f}'} |"
        )
        text = (
            f"- {name}: density reduction {relative['mean']:.2f}% relative "
            f"({_mark(relative['mean'] >= REDUCTION_TARGET_PERCENT)} ≥ {REDUCTION_TARGET_PERCENT:g}%); "
            f"accuracy {change['mean']:+.2f} points "
            f"({_mark(change['mean'] >= -ACCURACY_LOSS_TARGET_POINTS)} ≤ {ACCURACY_LOSS_TARGET_POINTS:g} point lost); "
            f"vs the matched-density threshold baseline {versus['mean']:+.2f} points "
            f"({_mark(versus['mean'] > 0)} > 0)"
        )  # fmt: skip
        if overhead is not None:
            text += f"; loss overhead {overhead:.1f}% ({_mark(overhead <= OVERHEAD_TARGET_PERCENT)} ≤ {OVERHEAD_TARGET_PERCENT:g}%)"
        verdicts.append(text)
    lines += ["", *verdicts, "", *_variant_table(methods), "", *_zeroed_table(methods), ""]
    lines += _per_layer_table(methods)
    layers = [_layer_index(layer) for layer in next(iter(methods.values()))["layers"]]
    lines += line_plot(
        figure_name(record),
        {
            f"{name} {label.upper()}": (range(len(layers)), row["per_layer_masked_percent"][label])
            for name, row in methods.items()
            for label in ("peft", "deft")
        },
        xlabel="layer",
        ylabel="% non-zero (masked)",
        title=record["name"],
        xticks=list(enumerate(layers)),
        dashed=lambda label: label.endswith("PEFT"),
    )
    return lines


def _variant_table(methods: dict[str, Any]) -> list[str]:
    lines = [
        "Density by variant (mean over seeds; reference counts padding, thresholded counts "
        "|a| ≤ τ as zero): PEFT → DEFT (relative reduction), matched-density threshold baseline.",
        "",
        "| method | variant | PEFT % | DEFT % | reduction (relative %) | reduction (points) "
        "| threshold baseline % |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for name, row in methods.items():
        density = row["density_percent"]
        for variant in VARIANTS:
            if variant not in density["peft"]:
                continue
            lines.append(
                f"| {name} | {_variant_label(variant)} | {density['peft'][variant]['mean']:.2f} "
                f"| {density['deft'][variant]['mean']:.2f} "
                f"| {row['reduction_relative_percent'][variant]['mean']:.2f} "
                f"| {row['reduction_percentage_points'][variant]['mean']:.2f} "
                f"| {density['threshold'][variant]['mean']:.2f} |"
            )
    return lines


def _zeroed_table(methods: dict[str, Any]) -> list[str]:
    lines = [
        "Test accuracy (%) with every MLP activation |a| ≤ τ set to zero in the forward pass "
        "(mean over seeds), and the masked density that leaves:",
        "",
        "| method | model | dense | τ = 1e-6 | τ = 1e-4 | τ = 1e-3 |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for name, row in methods.items():
        for label in ("peft", "deft"):
            zeroed = row["accuracy_with_zeroed"][label]
            density = row["density_percent"][label]
            cells = [
                f"{100 * zeroed[v]['mean']:.2f} ({density[v]['mean']:.1f}%)"
                for v in ("thresholded@1e-06", "thresholded@0.0001", "thresholded@0.001")
                if v in zeroed
            ]
            lines.append(
                f"| {name} | {label.upper()} "
                f"| {100 * row['test_accuracy'][label]['mean']:.2f} ({density['masked']['mean']:.1f}%) "
                f"| " + " | ".join(cells) + " |"
            )  # fmt: skip
    return lines


def _per_layer_table(methods: dict[str, Any]) -> list[str]:
    layers = next(iter(methods.values()))["layers"]
    header = " | ".join(f"{name} {label}" for name in methods for label in ("PEFT", "DEFT", "thr."))
    lines = [
        "Masked density per layer (% non-zero, mean over seeds; thr. = matched-density threshold "
        "baseline):",
        "",
        f"| layer | {header} |",
        "|---|" + "---:|" * (3 * len(methods)),
    ]
    for index, layer in enumerate(layers):
        cells = [
            f"{row['per_layer_masked_percent'][label][index]:.2f}"
            for row in methods.values()
            for label in ("peft", "deft", "threshold")
        ]
        lines.append(f"| {_layer_index(layer)} | " + " | ".join(cells) + " |")
    return lines


SMOLLM2_STATES = ("before", "LoRA", "LoRA + DEFT")


def smollm2_section(record: dict[str, Any]) -> list[str]:
    """LM loss and gate / gate⊙up density of SmolLM2 before and after LoRA, LoRA + DEFT."""
    states = record["eval_info"]["states"]
    train = record["train_info"]
    tau = record["run_info"]["config"].get("zeroed_tau", 1e-3)
    lines = [
        "Held-out LM loss (nats/token) and density (% non-zero, masked / |a| > τ) of the gate "
        "activation act(x W_gate) and of gate ⊙ up (the input of down_proj); train s/step is the "
        "training loop's mean (runs one after another, not interleaved):",
        "",
        f"| state | LM loss | perplexity | LM loss, \\|gate\\| ≤ {tau:g} zeroed | gate masked "
        "| gate \\|a\\|>1e-6 | gate \\|a\\|>1e-4 | gate \\|a\\|>1e-3 | gate⊙up masked "
        "| gate⊙up \\|a\\|>1e-3 "
        "| train s/step |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in SMOLLM2_STATES:
        if name not in states:
            continue
        state = states[name]
        gate = state["density"]["gate"]["mean"]
        product = state["density"]["product"]["mean"]
        seconds = train.get(name, {}).get("seconds_per_step")
        lines.append(
            f"| {name} | {state['lm_loss']:.4f} | {state['perplexity']:.4g} "
            f"| {state['lm_loss_gate_zeroed']:.4f} | {gate['masked']:.2f} "
            f"| {gate['thresholded@1e-06']:.2f} | {gate['thresholded@0.0001']:.2f} "
            f"| {gate['thresholded@0.001']:.2f} | {product['masked']:.2f} "
            f"| {product['thresholded@0.001']:.2f} | {'' if seconds is None else f'{seconds:.2f}'} |"
        )
    lines.append("")
    for comparison, by_mode in record["eval_info"]["reductions"].items():
        parts = [
            f"{'gate' if mode == 'gate' else 'gate⊙up'} {_variant_label(variant)}: "
            f"{_signed(by_mode[mode][variant]['relative_percent'])}% relative, "
            f"{_signed(by_mode[mode][variant]['percentage_points'])} points"
            for mode in ("gate", "product")
            for variant in ("masked", "thresholded@0.001")
        ]
        lines.append(f"- {comparison}: density reduction " + "; ".join(parts))
    lines += ["", *_smollm2_layers(states)]
    return lines


def _smollm2_layers(states: dict[str, Any]) -> list[str]:
    names = [name for name in SMOLLM2_STATES if name in states]
    layers = states[names[0]]["density"]["gate"]["layers"]
    lines = [
        "Gate density per layer, |a| > 1e-3 (% non-zero, real tokens):",
        "",
        "| layer | " + " | ".join(names) + " |",
        "|---|" + "---:|" * len(names),
    ]
    for index, layer in enumerate(layers):
        cells = [
            f"{states[name]['density']['gate']['per_layer']['thresholded@0.001'][index]:.2f}"
            for name in names
        ]
        lines.append(f"| {_layer_index(layer)} | " + " | ".join(cells) + " |")
    return lines


def weight_sweep_section(record: dict[str, Any]) -> list[str]:
    """Accuracy and density of LoRA + density loss across λ, against λ = 0."""
    rows = sorted(record["eval_info"]["weights"], key=lambda row: row["weight"])
    config = record["run_info"]["config"]
    base = next((row for row in rows if row["weight"] == 0), None)
    lines = [
        f"{config['epochs']:g} epochs over {config['max_train']} sentences, batch "
        f"{config['batch_size']}, learning rate {config['learning_rate']:g}; "
        "same data, seed, initialisation and learning rate for every λ; λ = 0 is plain LoRA. "
        "Densities in % non-zero MLP activations on the test split (fp32); the losses are the "
        "training loop's last logged values (task cross-entropy, unweighted density term):",
        "",
        "| λ | test accuracy | Δ vs λ=0 (points) | masked density | relative reduction "
        "| \\|a\\| > 1e-3 | last task loss | last density term |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        mean = row["report"]["mean"]
        last = row["loss_curve"][-1] if row["loss_curve"] else {}
        weight = row["weight"]
        density_term = last.get("density_loss", 0.0) / weight if weight else None
        change, reduction = "", ""
        if base is not None:
            change = f"{100 * (row['test_accuracy'] - base['test_accuracy']):+.2f}"
            base_masked = base["report"]["mean"]["masked"]
            reduction = f"{100 * (base_masked - mean['masked']) / base_masked:.1f}%"
        lines.append(
            f"| {weight:g} | {100 * row['test_accuracy']:.2f} | {change} | {mean['masked']:.2f} "
            f"| {reduction} | {mean['thresholded@0.001']:.2f} | {last.get('task_loss', float('nan')):.3f} "
            f"| {'' if density_term is None else f'{density_term:.3f}'} |"
        )
    return lines


def _signed(value: float, digits: int = 3) -> str:
    """``value`` to ``digits`` places, without the "-0.000" of a tiny negative rounding to zero."""
    text = f"{value:+.{digits}f}"
    return text[1:] if float(text) == 0 else text


def reference_setup_section(record: dict[str, Any]) -> list[str]:
    """LoRA with and without the density loss under parts of the reference setup."""
    rows = record["eval_info"]["settings"]
    config = record["run_info"]["config"]
    length = config["reference_length"]
    lines = [
        f"LoRA r=8 on Q/V, seed 0, the same {config['max_train']:,} sentences in every row. "
        '"pads counted": '
        f"batches padded to {length} tokens and the density loss averaged over every position, "
        "as the reference scripts do. Densities in % non-zero MLP activations on the test split "
        f'(fp32): masked counts real tokens, "padded to {length}" every position of batches '
        "padded as the reference measured them:",
        "",
        f"| setting | lr | batch | epochs | λ | test accuracy | masked density | padded to {length} "
        "| steps |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['name']} | {row['learning_rate']:g} | {row['batch_size']} | {row['epochs']:g} "
            f"| {row['weight']:g} | {100 * row['test_accuracy']:.2f} "
            f"| {row['report']['mean']['masked']:.2f} "
            f"| {row[f'reference_density_padded_to_{length}']:.2f} | {row['steps']} |"
        )
    return lines


def _optional(value: float | None, spec: str) -> str:
    return "" if value is None else spec.format(value)


def _percent(fraction: float | None) -> float | None:
    return None if fraction is None else 100 * fraction


_SCHEDULE_COLUMNS = (
    "| λ | delay | ramp | test accuracy | Δ vs plain (points) | masked density "
    "| relative reduction | \\|a\\| > 1e-3 | threshold baseline accuracy | DEFT − baseline "
    "(points) |"
)
_SCHEDULE_ALIGN = "---:|" * 10


def _schedule_cells(row: dict[str, Any]) -> list[str]:
    """λ, its schedule, accuracy, density and the threshold baseline of one trained row."""
    mean = row["report"]["mean"]
    return [
        f"{row['weight']:g}", f"{row['delay']:g}", f"{row['ramp']:g}",
        f"{100 * row['test_accuracy']:.2f}",
        _optional(row.get("accuracy_change_points"), "{:+.2f}"),
        f"{mean['masked']:.2f}",
        _optional(row.get("masked_reduction_relative_percent"), "{:.1f}%"),
        f"{mean['thresholded@0.001']:.2f}",
        _optional(_percent(row.get("threshold_baseline", {}).get("test_accuracy")), "{:.2f}"),
        _optional(row.get("deft_minus_threshold_baseline_points"), "{:+.2f}"),
    ]  # fmt: skip


def weight_schedule_section(record: dict[str, Any]) -> list[str]:
    """Constant λ vs λ held at 0 then ramped in, each against the matched-density threshold."""
    config = record["run_info"]["config"]
    lines = [
        f"LoRA r=8 on Q/V, seed {config['seed']}, learning rate {config['learning_rate']:g}, "
        f"{config['epochs']:g} epochs over the same {config['max_train']:,} sentences in every "
        "row. Delay and ramp are fractions of the run (λ = 0 during the delay, then rising "
        "linearly to λ). The threshold baseline is the plain LoRA model with |a| ≤ τ zeroed at "
        "the row's masked density. Densities in % non-zero MLP activations on the test split "
        "(fp32):",
        "",
        "| setting " + _SCHEDULE_COLUMNS,
        "|---|" + _SCHEDULE_ALIGN,
    ]
    for setting, row in record["eval_info"]["settings"].items():
        lines.append("| " + " | ".join([setting, *_schedule_cells(row)]) + " |")
    return lines


def _curve_point(point: dict[str, float]) -> str:
    return f"{100 * point['test_accuracy']:.2f} ({point['test_masked_density_percent']:.1f} %)"


def lora_targets_section(record: dict[str, Any]) -> list[str]:
    """LoRA on Q/V vs Q/V + MLP inputs, plain and with the density loss, and threshold curves."""
    config = record["run_info"]["config"]
    rows = record["eval_info"]["settings"]
    lines = [
        f"LoRA r=8, seed {config['seed']}, learning rate {config['learning_rate']:g}, "
        f"{config['epochs']:g} epochs over the same {config['max_train']:,} sentences in every "
        'row; "Q/V + MLP inputs" adds LoRA on every MLP input projection with its bias '
        "trained. Each DEFT row is compared with the plain model of the same targets (Δ, "
        "reduction, threshold baseline at the row's masked density). Densities in % non-zero MLP "
        "activations on the test split (fp32):",
        "",
        "| targets | setting " + _SCHEDULE_COLUMNS,
        "|---|---|" + _SCHEDULE_ALIGN,
    ]
    order = sorted(
        rows.items(), key=lambda item: (item[1]["targets"], item[1]["weight"], item[1]["delay"])
    )
    for setting, row in order:
        label = setting.removeprefix(f"{row['targets']}, ")
        lines.append("| " + " | ".join([row["targets"], label, *_schedule_cells(row)]) + " |")
    curves = {
        row["targets"]: row["threshold_curve"] for row in rows.values() if "threshold_curve" in row
    }
    if curves:
        densities = sorted(next(iter(curves.values())), key=float, reverse=True)
        lines += [
            "",
            "Test accuracy of each plain model with |a| ≤ τ zeroed, τ calibrated per layer on "
            "training sentences to a masked density (in brackets: the density reached on the test "
            "split). The curve a DEFT row has to lie above:",
            "",
            "| targets | " + " | ".join(f"{d} % density" for d in densities) + " |",
            "|---|" + "---:|" * len(densities),
        ]
        for targets, curve in curves.items():
            cells = [_curve_point(curve[d]) for d in densities]
            lines.append(f"| {targets} | " + " | ".join(cells) + " |")
    return lines


def _paired_against_baseline(seeds: dict[str, dict[str, dict]]) -> list[str]:
    """Per setting: on how many seeds it beat its own baseline, and the mean gap ± its s.e."""
    gaps: dict[str, list[float]] = {}  # the gap each row was recorded with (compare_with_plain)
    for rows in seeds.values():
        for setting, row in rows.items():
            if "deft_minus_threshold_baseline_points" in row:
                gaps.setdefault(setting, []).append(row["deft_minus_threshold_baseline_points"])
    lines = []
    for setting, values in gaps.items():
        spread = summary(values)
        ahead = sum(value > 0 for value in values)
        lines.append(
            f"- {setting}: ahead of its baseline on {ahead} of {len(values)} seeds; row − baseline "
            f"{spread['mean']:+.2f} ± {spread['std'] / len(values) ** 0.5:.2f} points "
            "(mean ± standard error over seeds)"
        )
    return lines


def threshold_in_training_section(record: dict[str, Any]) -> list[str]:
    """Plain LoRA vs LoRA trained with the threshold (± the density loss), over seeds."""
    config = record["run_info"]["config"]
    summaries = record["eval_info"]["summary"]
    lines = [
        f"LoRA r=8 on Q/V, learning rate {config['learning_rate']:g}, {config['epochs']:g} epochs "
        f"over the same {config['max_train']:,} sentences, training seeds "
        f"{', '.join(record['eval_info']['seeds'])}; the training threshold keeps "
        f"{100 * config['training_density']:g} % of the starting model's activations, the loss "
        f"uses ε = {config['eps']:g}. Each thresholded row against the plain model of the same "
        "seed, thresholded after training to the row's test density (mean ± std over seeds; "
        "densities in % non-zero GELU outputs on the test split, fp32):",
        "",
        "| setting | seeds | test accuracy | masked density | relative reduction | Δ vs plain "
        "(points) | threshold baseline accuracy | row − baseline (points) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for setting, entry in summaries.items():
        compared = "threshold_baseline_accuracy" in entry
        cells = [
            setting, str(entry["seeds"]), _pm(entry["test_accuracy"], 100),
            _pm(entry["masked_density_percent"]),
            _pm(entry["masked_reduction_relative_percent"], digits=1) + " %" if compared else "",
            _pm(entry["accuracy_change_points"]) if compared else "",
            _pm(entry["threshold_baseline_accuracy"], 100) if compared else "",
            _pm(entry["minus_threshold_baseline_points"]) if compared else "",
        ]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", *_paired_against_baseline(record["eval_info"]["seeds"])]
    lines += ["", "Per seed (test accuracy % at masked density %; baseline accuracy):", ""]
    for seed, rows in record["eval_info"]["seeds"].items():
        parts = []
        for setting, row in rows.items():
            text = f"{setting}: {100 * row['test_accuracy']:.2f} at {row['report']['mean']['masked']:.2f}"
            if "threshold_baseline" in row:
                text += f" (baseline {100 * row['threshold_baseline']['test_accuracy']:.2f})"
            parts.append(text)
        lines.append(f"- seed {seed}: " + "; ".join(parts))
    return lines


def qlora_section(record: dict[str, Any]) -> list[str]:
    """The deft-minilm table for QLoRA, then QLoRA beside deft-minilm's fp32 LoRA, seed by seed."""
    from benchmarks.deft.bench_minilm import _record_name
    from benchmarks.records import read_records

    config = record["run_info"]["config"]
    lines = [
        f"all-MiniLM-L6-v2 in 4-bit NF4 (double quantisation, {config['quantization']['compute_dtype']} "
        f"compute, head in fp32) on {config['device']}, LoRA r=8 on Q/V, the deft-minilm recipe.",
        "",
        *minilm_section(record),
    ]  # fmt: skip
    minilm = next((r for r in read_records() if r["name"] == _record_name(False)), None)
    lora = None if minilm is None else minilm["eval_info"]["methods"].get("LoRA")
    if lora is None or config["quick"]:
        return lines
    fp32 = {run["seed"]: run for run in lora["runs"]}
    lines += [
        "",
        "Against fp32 LoRA (deft-minilm, same seed and data), test accuracy %. The two were "
        f"measured apart: deft-minilm recorded {minilm['run_info']['created_at']}, this record "
        f"{record['run_info']['created_at']}; {_recipe_comparison(config, minilm)}.",
        "",
    ]
    for run in record["eval_info"]["methods"]["QLoRA"]["runs"]:
        other = fp32.get(run["seed"])
        if other is not None:
            lines.append(
                f"- seed {run['seed']}: PEFT {100 * run['peft']['test_accuracy']:.2f} (fp32 LoRA "
                f"{100 * other['peft']['test_accuracy']:.2f}), DEFT "
                f"{100 * run['deft']['test_accuracy']:.2f} (fp32 LoRA + DEFT "
                f"{100 * other['deft']['test_accuracy']:.2f})"
            )
    return lines


# The recipe keys of deft-qlora that deft-minilm records too (its learning rate per method).
_SHARED_RECIPE = ("epochs", "batch_size", "warmup_ratio", "density_weight", "calibration_examples",
                  "max_train")  # fmt: skip


def _recipe_comparison(qlora_config: dict[str, Any], minilm: dict[str, Any]) -> str:
    """Which recipe settings the QLoRA record shares with deft-minilm's LoRA rows, and which
    differ or the older record lacks: the comparison is only as good as that list."""
    other = {**minilm["run_info"]["config"]}
    other["learning_rate"] = other.get("learning_rates", {}).get("LoRA")
    same, differ, unknown = [], [], []
    for key in ("learning_rate", *_SHARED_RECIPE):
        if other.get(key) is None:
            unknown.append(key)
        elif other[key] == qlora_config.get(key):
            same.append(key)
        else:
            differ.append(f"{key} {other[key]!r} there, {qlora_config.get(key)!r} here")
    parts = [f"same {', '.join(same)}"] if same else []
    if differ:
        parts.append(f"different {'; '.join(differ)}")
    if unknown:
        parts.append(f"not recorded by deft-minilm: {', '.join(unknown)}")
    return "; ".join(parts)


RENDERERS = {
    "deft qlora": qlora_section,
    "deft density-weight schedule": weight_schedule_section,
    "deft minilm": minilm_section,
    "deft smollm2": smollm2_section,
    "deft density-weight sweep": weight_sweep_section,
    "deft reference setup": reference_setup_section,
    "deft lora targets": lora_targets_section,
    "deft threshold in training": threshold_in_training_section,
}

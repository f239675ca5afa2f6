"""The analytic floor: the shortest time the machine could take for a batch, against the measured time.

For a batch of b samples the model needs b x flops_per_sample floating-point operations and must read its
weights (weight_bytes) at least once. With the campaign's peak probe (matmul FLOP/s and copy bytes/s),
the floor is max(b x flops / peak_flops, weight_bytes / peak_bytes_per_s): a roofline with the batch's
arithmetic intensity. Compute efficiency = floor / measured compute time per batch. Small models with
sequential structure (an LSTM steps through its sequence) stay far from the floor; a low efficiency says
the time goes to per-operation overheads, not to arithmetic, so faster arithmetic (GPU, fp16) helps less
than fewer, larger operations (batching).

The probe measures float32 matmul; for int8 variants the floor still uses it (integer kernels are not
probed), which understates what the hardware could do, and says so.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from servescope.results import CampaignInfo, StepRecord


@dataclass
class FloorEstimate:
    model: str
    step_index: int
    batch_size_mean: float
    flops_per_batch: float
    weight_bytes: float
    compute_floor_s: float
    memory_floor_s: float
    measured_s: float
    note: str | None = None

    @property
    def floor_s(self) -> float:
        return max(self.compute_floor_s, self.memory_floor_s)

    @property
    def bound(self) -> str:
        return "compute" if self.compute_floor_s >= self.memory_floor_s else "memory"

    @property
    def efficiency(self) -> float:
        return self.floor_s / self.measured_s if self.measured_s > 0 else 0.0


def analyze_floor(steps: list[StepRecord], info: CampaignInfo) -> tuple[list[FloorEstimate], list[str]]:
    notes: list[str] = []
    if info.peak is None:
        return [], ["campaign has no peak probe: no analytic floor"]
    by_model: dict[str, list[StepRecord]] = defaultdict(list)
    for step in steps:
        if step.server is not None and step.server.batch_size_mean and step.server.compute_mean_s:
            by_model[step.model].append(step)
    estimates = []
    for model, group in sorted(by_model.items()):
        metadata = info.models.get(model, {})
        flops = metadata.get("flops_per_sample")
        weight_bytes = metadata.get("weight_bytes")
        if not flops or weight_bytes is None:
            notes.append(f"{model}: metadata lacks flops_per_sample or weight_bytes; no analytic floor")
            continue
        # The step with the largest batches is the most efficient one the campaign measured.
        step = max(group, key=lambda s: (s.server.batch_size_mean, s.inferences_per_s))  # type: ignore[union-attr]
        assert step.server is not None and step.server.batch_size_mean and step.server.compute_mean_s
        batch = step.server.batch_size_mean
        note_parts = []
        if metadata.get("precision") == "int8":
            note_parts.append("int8 model against a float32 matmul peak")
        device = step.server_settings.device
        if device and device != info.peak.device:
            note_parts.append(f"served on {device} but the peak was probed on {info.peak.device}")
        estimate = FloorEstimate(
            model=model,
            step_index=step.step_index,
            batch_size_mean=batch,
            flops_per_batch=batch * float(flops),
            weight_bytes=float(weight_bytes),
            compute_floor_s=batch * float(flops) / info.peak.matmul_flops_per_s,
            memory_floor_s=float(weight_bytes) / info.peak.memory_bytes_per_s,
            measured_s=step.server.compute_mean_s,
        )
        if estimate.efficiency > 1.0:
            # Faster than the "floor": the probe understated the machine (it ran while the machine was
            # busy, or the model's kernels beat a 512x512 numpy matmul), so the efficiency means nothing.
            note_parts.append(
                f"measured compute beats the floor ({estimate.efficiency:.0%}): the peak probe understated "
                "this machine (busy while probing?); efficiency is not meaningful here"
            )
        estimate.note = "; ".join(note_parts) or None
        estimates.append(estimate)
    return estimates, notes

"""ExportReport: what an export wrote, how long it took, and what verification measured."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mos.export.fp16 import Fp16Report
from mos.export.quantize import INT8_PADDING_TOL, Int8Report
from mos.export.text_int8 import TextInt8Report
from mos.export.verify import VerifyReport


def _mb(n: int) -> str:
    return f"{n / 1e6:.2f} MB"


@dataclass
class ExportReport:
    bundle: Path
    checkpoint: Path
    opset: int
    files: dict[str, int] = field(default_factory=dict)  # name -> bytes
    seconds: dict[str, float] = field(default_factory=dict)  # stage -> seconds
    verify: VerifyReport | None = None
    int8: Int8Report | None = None
    text_int8: TextInt8Report | None = None
    fp16: Fp16Report | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def total_seconds(self) -> float:
        return sum(self.seconds.values())

    def format(self) -> list[str]:
        stages = ", ".join(f"{k} {v:.1f} s" for k, v in self.seconds.items())
        lines = [
            f"exported {self.checkpoint} -> {self.bundle} (opset {self.opset}) in {self.total_seconds:.1f} s ({stages})",
        ]
        lines += [f"  {name:<18} {_mb(size)}" for name, size in self.files.items()]
        if self.int8 is not None:
            q = self.int8
            state = " - NOT WRITTEN" if q.dropped else " - written with --force" if q.forced else ""
            lines += [
                f"int8 ({q.method}){state}",
                f"  calibration: {q.calibration_clips} clips from {q.calibration}",
                *[f"  WARNING: {w}" for w in q.warnings],
                f"  size {_mb(q.fp32_bytes)} -> {_mb(q.int8_bytes)}; speed per {q.bench_seconds:g} s clip (2 threads, "
                f"median) {q.fp32_ms:.2f} ms -> {q.int8_ms:.2f} ms ({q.speedup:.2f}x; fastest run "
                f"{q.fp32_ms_best:.2f} -> {q.int8_ms_best:.2f} ms)",
                f"  padding invariance: max abs diff {q.padding_gap:.1e} (tolerance {INT8_PADDING_TOL:.0e})",
                q.bias_correction.line(),
                *q.agreement.lines(),
            ]
            if q.agreement.srcc:
                per = ", ".join(f"'{k}' {s.fp32:.4f} -> {s.variant:.4f} ({-s.drop:+.4f}; lower 95% bound "
                                f"of the drop {s.drop_bound:+.4f})" for k, s in q.agreement.srcc.items())
                lines.append(f"  validation SRCC fp32 -> int8 on {q.agreement.clips} clips: {per}")
        if self.text_int8 is not None:
            lines += self.text_int8.format()
        if self.fp16 is not None:
            lines.append(f"fp16: {_mb(self.fp16.fp32_bytes)} -> {_mb(self.fp16.fp16_bytes)}; {self.fp16.note}")
        if self.verify is not None:
            lines += self.verify.format()
        else:
            lines.append("verification skipped (--no-verify)")
        lines += [f"note: {n}" for n in self.notes]
        return lines

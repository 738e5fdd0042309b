"""ONNX export: a verified, self-describing bundle (audio.onnx, text.onnx, tokenizer, variants)."""

from mos.export.build import export_bundle
from mos.export.report import ExportReport
from mos.export.verify import VerifyReport, verify_bundle

__all__ = ["export_bundle", "verify_bundle", "ExportReport", "VerifyReport"]

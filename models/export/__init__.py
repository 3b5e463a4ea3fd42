"""Models out to other runtimes: `FORMATS.get(name)(ExportRequest(...)) -> Exported` for onnx,
torchscript and mmaction2 (docs/export.md); `run.py export` is the command around it."""
from models.export import onnx, torchscript  # noqa: F401  (register their formats)
from models.export.request import FORMATS, Exported, ExportRequest


@FORMATS.register("mmaction2")
def export_mmaction2(request: ExportRequest) -> Exported:
    """A checkpoint and the config text mmaction2's own modules load (models/export/mmaction2.py)."""
    from models.export.mmaction2 import write_mmaction2  # imported when chosen: it needs nothing else here

    return Exported(write_mmaction2(request.model_cfg, request.model.state_dict(), request.out,
                                    normalisation=request.normalisation))


__all__ = ["FORMATS", "Exported", "ExportRequest"]

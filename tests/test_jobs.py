"""Job generators behind the dock's workers: progress, stop between steps, results."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_pix2rep.core.progress import Progress
from napari_pix2rep.evaluation.phantom import make_phantom
from napari_pix2rep.io.nifti_write import write_nifti
from napari_pix2rep.jobs import predict_job, pretrain_job, segment_job
from napari_pix2rep.segment.localise import locate_heart
from napari_pix2rep.segment.predict import predict_volume
from napari_pix2rep.segment.recipe import Annotation, Scan
from napari_pix2rep.segment.settings import SegmentSettings

TINY = {"preset": "tiny", "crop": 64, "batch_size": 4, "checkpoint_every": 10_000}


def drive(gen, stop=None):
    """Run a job generator to its end: ``(progress list, result)``; ``stop`` sees each step."""
    seen = []
    while True:
        try:
            p = next(gen)
        except StopIteration as s:
            return seen, s.value
        seen.append(p)
        if stop is not None:
            stop.see(p)


class StopAt:
    """A stop flag raised once a progress report passes ``test`` (like the Cancel button)."""

    def __init__(self, test):
        self.test, self.flag = test, False

    def see(self, p):
        self.flag = self.flag or self.test(p)

    def check(self):
        return self.flag


@pytest.fixture(scope="module")
def quick_backbone(tmp_path_factory):
    """A barely trained tiny backbone (job mechanics only, not quality)."""
    out = tmp_path_factory.mktemp("jobs") / "quick.pt"
    ph = make_phantom(n_slices=4, size=(64, 64), seed=8)
    drive(
        pretrain_job(
            [(ph.image, ph.spacing, "ph")], out=out, config={**TINY, "steps": 3}, device="cpu"
        )
    )
    return out


def test_pretrain_job_reads_folders_skips_labels_and_stops(tmp_path):
    ph = make_phantom(n_slices=4, size=(64, 64), seed=2)
    vol = ph.to_volume()
    (tmp_path / "data").mkdir()
    write_nifti(tmp_path / "data" / "a.nii.gz", ph.image, vol, kind="image")
    write_nifti(tmp_path / "data" / "a_gt.nii.gz", ph.labels, vol, kind="labels")
    out = tmp_path / "bb.pt"
    stop = StopAt(lambda p: p.stage == "pretrain" and p.step >= 3)
    seen, result = drive(
        pretrain_job(
            [(ph.image, ph.spacing, "layer")],
            [tmp_path / "data"],
            out=out,
            config={**TINY, "steps": 500},
            device="cpu",
            should_stop=stop.check,
        ),
        stop,
    )
    loading = [p for p in seen if p.stage == "loading"]
    assert loading[-1].step == loading[-1].total == 2  # the layer and a.nii.gz, not a_gt
    assert "1 file (skipped: 1 label file named *_gt" in loading[0].message  # as the CLI
    assert all(isinstance(p, Progress) for p in seen)
    steps = [p for p in seen if p.stage == "pretrain"]
    assert steps[-1].step == 3 and steps[-1].loss is not None and steps[-1].eta_s >= 0
    assert result.cancelled and result.steps_done == 3 and result.path == out
    state = torch.load(out, weights_only=True)
    assert state["meta"]["steps"] == 3
    assert state["meta"]["data"] == ["layer:layer", str(tmp_path / "data" / "a.nii.gz")]


def test_pretrain_job_checks_and_locks_its_output_first(tmp_path):
    from napari_pix2rep.io.outputs import OutputError, OutputLock

    ph = make_phantom(n_slices=2, size=(48, 48), seed=2)
    volumes = [(ph.image, ph.spacing, "layer")]
    with pytest.raises(OutputError, match="is a folder"):
        next(pretrain_job(volumes, out=tmp_path, config=TINY, device="cpu"))
    out = tmp_path / "bb.pt"
    with OutputLock(out), pytest.raises(OutputError, match="being written by another run"):
        next(pretrain_job(volumes, out=out, config=TINY, device="cpu"))
    _, result = drive(pretrain_job(volumes, out=out, config={**TINY, "steps": 1}, device="cpu"))
    assert result.path == out and not (tmp_path / "bb.pt.lock").exists()


def test_pretrain_job_needs_data(tmp_path):
    with pytest.raises(ValueError, match="No data"):
        drive(pretrain_job([], [], out=tmp_path / "x.pt", config=TINY))


def test_segment_job_trains_predicts_and_reuses(quick_backbone):
    ph = make_phantom(n_slices=4, size=(64, 64), seed=3)
    labels = np.zeros_like(ph.labels)
    labels[1] = ph.labels[1]
    seen, result = drive(
        segment_job(
            str(quick_backbone),
            [Scan(ph.image, ph.spacing)],
            [Annotation(labels)],
            settings=SegmentSettings(training={"probe_steps": 5}),
            device="cpu",
        )
    )
    assert [p.stage for p in seen][-1] == "predict" and "probe" in {p.stage for p in seen}
    assert not result.cancelled and result.trained
    assert result.prediction.labels.shape == ph.image.shape
    assert result.uncertainty.dtype == np.float16 and result.report.images[0].how == "linear probe"

    # predict only, on a 4D image: frame by frame equals one whole-volume call
    cine = make_phantom(n_slices=3, size=(64, 64), n_frames=3, seed=6)
    seen, again = drive(predict_job(result.segmenter, (cine.image, cine.spacing), device="cpu"))
    assert [p.step for p in seen] == [0, 1, 2, 3] and not again.trained
    motion = locate_heart(cine.image, cine.spacing)
    whole = predict_volume(result.segmenter, cine.image, cine.spacing, device="cpu", region=motion)
    np.testing.assert_array_equal(again.prediction.labels, whole.labels)
    assert again.prediction.probabilities.shape == whole.probabilities.shape

    with pytest.raises(ValueError, match="not a trained segmenter"):
        drive(predict_job(str(quick_backbone), (ph.image, ph.spacing)))


def test_segment_job_stops_between_steps(quick_backbone):
    ph = make_phantom(n_slices=4, size=(64, 64), seed=3)
    labels = np.zeros_like(ph.labels)
    labels[2] = ph.labels[2]
    stop = StopAt(lambda p: p.stage == "probe" and p.step >= 2)
    seen, result = drive(
        segment_job(
            str(quick_backbone),
            [Scan(ph.image, ph.spacing)],
            [Annotation(labels)],
            settings=SegmentSettings(training={"probe_steps": 1000}),
            device="cpu",
            should_stop=stop.check,
        ),
        stop,
    )
    assert result.cancelled and result.prediction is None
    assert seen[-1].stage == "probe" and seen[-1].step == 2


def test_pretrain_job_reads_dicom_series_in_a_folder(tmp_path):
    from dicom_series import write_series

    ph = make_phantom(n_slices=4, size=(64, 64), n_frames=2, seed=2)
    write_series(tmp_path / "data" / "cine", np.round(ph.image * 1000), step_mm=10.0)
    out = tmp_path / "bb.pt"
    seen, result = drive(
        pretrain_job([], [tmp_path / "data"], out=out, config={**TINY, "steps": 1}, device="cpu")
    )
    loading = [p for p in seen if p.stage == "loading"]
    assert loading[-1].total == 1 and result.steps_done == 1 and out.is_file()
    assert torch.load(out, weights_only=True)["meta"]["data"][0].startswith(str(tmp_path))


def test_a_segment_reads_the_model_file_once(quick_backbone, tmp_path, monkeypatch):
    from napari_pix2rep.jobs import train_job

    ph = make_phantom(n_slices=3, size=(48, 48), seed=4)
    labels = np.zeros_like(ph.labels)
    labels[1] = ph.labels[1]
    scans, annotations = [Scan(ph.image, ph.spacing)], [Annotation(labels)]
    settings = SegmentSettings(training={"probe_steps": 1}, propagate=False)
    seg_file = tmp_path / "seg.pt"
    _, trained = drive(
        segment_job(str(quick_backbone), scans, annotations, settings=settings, device="cpu")
    )
    trained.segmenter.save(seg_file)
    loads = []
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: loads.append(a[0]) or real_load(*a, **k))
    for model in (quick_backbone, seg_file):  # a backbone, and a segmenter's backbone
        loads.clear()
        _, result = drive(
            segment_job(str(model), scans, annotations, settings=settings, device="cpu")
        )
        assert result.prediction is not None and len(loads) == 1, loads
    loads.clear()
    _, result = drive(segment_job(str(seg_file), scans, [None]))  # nothing painted: predicts
    assert result.prediction is not None and loads == [seg_file] and not result.trained
    loads.clear()
    _, result = drive(predict_job(str(seg_file), (ph.image, ph.spacing), device="cpu"))
    assert result.prediction is not None and loads == [seg_file]

    # training from a segmenter learns the classes asked for, from its backbone
    loads.clear()
    binary = (labels > 0).astype(np.uint8)
    _, result = drive(
        train_job(
            str(seg_file),
            [(ph.image, ph.spacing, binary)],
            config={"classes": ("background", "heart"), "probe_steps": 1},
            device="cpu",
        )
    )
    assert result.segmenter.classes == ("background", "heart") and len(loads) == 1
    assert result.prediction is None and not result.cancelled

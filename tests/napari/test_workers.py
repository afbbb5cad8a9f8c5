"""Jobs off the GUI thread: their warnings stay in view under the status line."""

from __future__ import annotations

import warnings


def test_a_job_in_a_worker_thread_keeps_its_warnings_in_view(qtbot, monkeypatch):
    monkeypatch.delenv("NAPARI_MICROSTRUCTURE_SYNC", raising=False)
    from napari_microstructure._napari._workers import Job, ProgressPanel

    def work(progress=None, cancel=None):
        warnings.warn("one crop covers 60 % of the image", UserWarning)
        warnings.warn("one crop covers 60 % of the image", UserWarning)   # the same message: shown once
        return 7

    panel = ProgressPanel()
    qtbot.addWidget(panel)
    got = []
    job = Job(work)
    job.finished.connect(got.append)
    panel.attach(job)
    job.start()
    qtbot.waitUntil(lambda: bool(got), timeout=20_000)
    assert got == [7]
    qtbot.waitUntil(lambda: "60 %" in panel.warning.text(), timeout=5_000)
    assert panel.warning.text() == "warning: one crop covers 60 % of the image"
    panel.attach(Job(work))                       # a new job starts with no warning shown
    assert panel.warning.text() == "" and panel.warning.isHidden()


def test_time_left_is_the_current_stages_own(qtbot, monkeypatch):
    """A job of two stages: 30 s of features, then epochs at 1 s each. Ten epochs into twenty, the
    estimate is about 10 s (the stage's own pace), not the 300 s that the job's elapsed time over the
    stage's fraction gives; a stage that restarts the bar (same name) is timed anew too."""
    import re
    import time

    from napari_microstructure._napari._workers import Job, ProgressPanel
    from napari_microstructure.core.nn.progress import Progress

    clock = [1000.0]
    monkeypatch.setattr(time, "perf_counter", lambda: clock[0])
    panel = ProgressPanel()
    qtbot.addWidget(panel)
    panel.attach(Job(lambda progress=None, cancel=None: None))

    def left(stage, step, total, at):
        clock[0] = 1000.0 + at
        panel.show_progress(Progress(stage, step, total, f"{stage} {step}"))
        found = re.search(r"about (?:(\d+) min )?(\d+) s left", panel.status.text())
        return None if found is None else 60 * int(found.group(1) or 0) + int(found.group(2))

    assert left("features", 1, 2, 15) == 15             # the first stage began with the job
    assert left("features", 2, 2, 30) is None           # done: no estimate
    assert left("train", 1, 20, 31) is None             # 1 s into the stage: too early to say
    assert left("train", 10, 20, 40) == 10              # 10 s for half the epochs: 10 s left
    assert panel.bar.value() == 50
    assert left("train", 2, 10, 44) == 16               # the bar restarts: a new stage since 40 s

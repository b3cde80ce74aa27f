import pytest
import torch

from napari_pix2rep.cli.common import StopOnSignal, cores_to_leave
from napari_pix2rep.core.progress import Progress
from napari_pix2rep.model.threads import busy_cores, cpu_count, cpu_threads


def test_cpu_threads_restores_the_count():
    before = torch.get_num_threads()
    with cpu_threads(torch.device("cpu")):
        assert torch.get_num_threads() == max(1, cpu_count() - 1)
    assert torch.get_num_threads() == before
    with cpu_threads(torch.device("cpu"), keep_free=None):
        assert torch.get_num_threads() == before
    with cpu_threads(torch.device("meta")):
        assert torch.get_num_threads() == before


def test_busy_cores_follows_the_load_and_always_leaves_one_thread():
    assert busy_cores(cpus=2, load=0.05, env={}) == 0  # idle: every core
    assert busy_cores(cpus=2, load=1.2, env={}) == 1
    assert busy_cores(cpus=2, load=3.7, env={}) == 1  # never below one thread
    assert busy_cores(cpus=8, load=2.6, env={}) == 3
    assert busy_cores(cpus=1, load=5.0, env={}) == 0


def test_busy_cores_leaves_a_users_choice_alone():
    assert busy_cores(cpus=2, load=3.0, env={"OMP_NUM_THREADS": "2"}) is None
    assert busy_cores(cpus=2, load=3.0, env={"MKL_NUM_THREADS": "1"}) is None
    assert busy_cores(cpus=2, load=3.0, env={"OMP_NUM_THREADS": " "}) == 1


def test_the_cli_says_when_it_computes_on_fewer_threads(monkeypatch, capsys):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    monkeypatch.setattr("napari_pix2rep.model.threads.cpu_count", lambda: 2)
    monkeypatch.setattr("os.getloadavg", lambda: (3.7, 3.0, 2.0))
    keep, note = cores_to_leave("cpu")
    assert keep == 1 and "busy (load 3.7 on 2 cores)" in note and "1 thread " in note

    def job():
        yield Progress("loading", 0, 1)  # input checks may still fail here
        yield Progress("probe", 0, 2)
        yield Progress("probe", 1, 2)
        return "done"

    # said once computing starts
    assert StopOnSignal().run(job(), note=note) == "done"
    assert capsys.readouterr().err.strip() == note

    def failing():
        raise ValueError("No annotated slice.")
        yield Progress("probe", 0, 1)

    with pytest.raises(ValueError):  # an input error stays one sentence: no note before it
        StopOnSignal().run(failing(), note=note)
    assert capsys.readouterr().err == ""

    monkeypatch.setattr("os.getloadavg", lambda: (0.1, 0.1, 0.1))
    assert cores_to_leave("cpu") == (0, None)

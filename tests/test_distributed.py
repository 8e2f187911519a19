"""Multi-worker training proven on this machine: two CPU workers on 127.0.0.1 (MultiWorkerMirroredStrategy from
TF_CONFIG) train the same tiny models as ``tests/multi_worker_job.py``; loopback only, each process bounded in time
and killed when the test ends."""

import json
import os
import pathlib
import socket
import subprocess
import sys
import time

import pytest

JOB = pathlib.Path(__file__).with_name("multi_worker_job.py")
TIMEOUT_S = 300


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def start_workers(kind: str, directory: pathlib.Path, epochs: int, crash: dict | None = None) -> list:
    """Two worker processes of one cluster; ``crash``: worker index -> epoch after which it dies."""
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(2)]}
    processes = []
    for index in range(2):
        env = {
            **os.environ,
            "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}),
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "CUDA_VISIBLE_DEVICES": "",
        }
        env.pop("SFC_TEST_CRASH_AFTER_EPOCH", None)
        if crash and index in crash:
            env["SFC_TEST_CRASH_AFTER_EPOCH"] = str(crash[index])
        processes.append(
            subprocess.Popen(
                [sys.executable, str(JOB), kind, str(directory), str(epochs)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    return processes


def finish(processes: list) -> list[dict]:
    """The meta.json each worker returned (both must succeed)."""
    try:
        outputs = [p.communicate(timeout=TIMEOUT_S) for p in processes]
    finally:
        for p in processes:
            p.kill()
    for p, (_, err) in zip(processes, outputs):
        assert p.returncode == 0, err[-3000:]
    return [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]


@pytest.mark.parametrize("kind", ["reconstructor", "enhancement"])
def test_two_workers_train_identical_weights(kind, tmp_path):
    chief, other = finish(start_workers(kind, tmp_path / "ckpt", 2))
    assert chief["sha256"] == other["sha256"]  # sha256 of the weight files each worker saved
    written = json.loads((tmp_path / "ckpt" / "meta.json").read_text())
    assert written["sha256"] == chief["sha256"]  # only the chief wrote the checkpoint


def test_a_killed_worker_and_the_job_resumes_from_the_saved_state(tmp_path):
    directory = tmp_path / "ckpt"
    processes = start_workers("reconstructor", directory, 3, crash={1: 1})
    try:
        assert processes[1].wait(timeout=TIMEOUT_S) == 3  # worker 1 died after epoch 1; the chief now waits for it
        time.sleep(2)
        assert processes[0].poll() is None
    finally:
        for p in processes:
            p.kill()
            p.communicate()
    assert (directory / "train_state").is_dir() and not (directory / "meta.json").exists()
    chief, other = finish(start_workers("reconstructor", directory, 3))  # the same command again
    assert chief["epochs_this_session"] == other["epochs_this_session"] == 2  # epoch 1 was not redone
    assert chief["sha256"] == other["sha256"]

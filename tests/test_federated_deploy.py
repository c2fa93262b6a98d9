"""A real Flower deployment on 127.0.0.1: flower-superlink, two flower-supernode processes and `flwr run` of
examples/flower-app, whose ServerApp (unlearnkit.federated.deploy) trains and saves a federated checkpoint. The
result must equal the in-process federation's bit for bit: the same code runs in both.

Every process listens on 127.0.0.1 only, on free ports, and is killed at the end; the run is bounded by timeouts.
Run: .venv/bin/python -m pytest tests/test_federated_deploy.py -q
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from unlearnkit.data import load_dataset
from unlearnkit.federated import FedConfig, train_federation
from unlearnkit.models import load_checkpoint

BIN = Path(sys.executable).parent
APP = Path(__file__).resolve().parents[1] / "examples" / "flower-app"
pytestmark = pytest.mark.skipif(not (BIN / "flower-superlink").exists(),
                                reason="Flower is not installed (make install)")


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def wait_for_port(port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f} s")


@pytest.fixture
def deployment(tmp_path):
    link, node0, node1 = free_ports(3)
    # Flower starts its helpers (flower-superexec, flwr-serverapp, flwr-clientapp) from PATH
    env = {**os.environ, "FLWR_HOME": str(tmp_path / "flwr"), "OMP_NUM_THREADS": "1",
           "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    (tmp_path / "flwr").mkdir()
    (tmp_path / "flwr" / "config.toml").write_text(
        f'[superlink]\ndefault = "test"\n\n[superlink.test]\naddress = "127.0.0.1:{link}"\ninsecure = true\n')
    logs = tmp_path / "logs"
    logs.mkdir()
    procs = []

    def start(name: str, *args: str) -> None:
        out = open(logs / f"{name}.log", "w")  # noqa: SIM115 - closed with the process below
        procs.append((subprocess.Popen([str(BIN / args[0]), *args[1:]], env=env, cwd=tmp_path, stdout=out,
                                       stderr=subprocess.STDOUT, start_new_session=True), out))

    # Flower 1.42: one HTTP runtime API per SuperLink and per SuperNode (--host/--port)
    start("superlink", "flower-superlink", "--insecure", "--host", "127.0.0.1", "--port", str(link),
          "--database", str(tmp_path / "state.db"))
    wait_for_port(link)  # SuperNodes that find no SuperLink back off for up to 20 s between tries
    for k, port in enumerate((node0, node1)):
        start(f"supernode{k}", "flower-supernode", "--insecure", "--superlink", f"127.0.0.1:{link}", "--port",
              str(port), "--node-config", f"partition-id={k} num-partitions=2")
    try:
        yield tmp_path, env, logs
    finally:
        for proc, out in procs:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=30)
            out.close()


def test_flwr_run_on_a_local_deployment_equals_the_in_process_federation(deployment):
    tmp_path, env, logs = deployment
    app = tmp_path / "app"
    shutil.copytree(APP, app)
    out = tmp_path / "deployed"
    settings = f'out="{out}" clients=2 rounds=2 local-epochs=1 dataset="digits" partition="iid" seed=0'
    run = subprocess.run([str(BIN / "flwr"), "run", str(app), "test", "--run-config", settings, "--stream"],
                         env=env, cwd=tmp_path, capture_output=True, text=True, timeout=240)
    deadline = time.monotonic() + 120  # --stream may return before the ServerApp has saved the checkpoint
    while not (tmp_path / "deployed.json").exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    if not (tmp_path / "deployed.json").exists():
        server_log = "\n".join(p.read_text()[-2000:] for p in sorted(logs.glob("*.log")))
        pytest.fail(f"no checkpoint from the deployment; flwr run said:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}\n"
                    f"{server_log}")
    ckpt = load_checkpoint(out)
    assert ckpt.meta["federated"]["backend"] == "deployment"
    local = train_federation(load_dataset("digits"), "mlp", FedConfig(clients=2, rounds=2, local_epochs=1, seed=0),
                             tmp_path / "local", backend="local")
    deployed = ckpt.model.state_dict()
    for name, value in local.model.state_dict().items():
        assert (deployed[name] - value).abs().max() == 0, name

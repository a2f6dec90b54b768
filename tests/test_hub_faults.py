"""The Hub failing part-way: concurrent cold loads, a server killed mid-download, a server killed mid-push.

Everything is real: the real ``huggingface_hub`` client, the local Hub server (:mod:`ltzoo.testing.hub_server`)
as a thread or, where it must die as a crashed server does, as a separate process killed with SIGKILL, and
separate client processes for the concurrent loads. The server's fault hooks (:class:`Faults`) only decide
*where* it stops (a download or an upload stalled after a known number of bytes, a download held until every
client is inside it), so each test kills at a known point instead of racing a timer.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
import torch
from hub_fixtures import ORG, USER, WRITE_TOKEN, isolated_process, make_run, read_json, set_cache  # noqa: F401 (fixtures)
from huggingface_hub import HfApi, hf_hub_download
from ports import free_port

import ltzoo
from ltzoo.errors import HubError, LtzooError
from ltzoo.publish.push import push_run
from ltzoo.runs import load_run
from ltzoo.testing import hub_server
from ltzoo.testing.hub_server import Faults, LocalHub, git_blob_sha1

REPO = f"{ORG}/ce_resnet32.fmnist_lt"
STORAGE = f"models--{ORG}--ce_resnet32.fmnist_lt"  # the repo's folder in an HF cache
WEIGHTS = "model.safetensors"
TIMEOUT = 60  # seconds: a generous ceiling for any single wait; the tests take a few seconds each


def _logits(model: torch.nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.randn(2, 1, 28, 28, generator=torch.Generator().manual_seed(11)))


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _hub_env(monkeypatch: pytest.MonkeyPatch, url: str, home: Path) -> Path:
    """Point ltzoo at the server and at a fresh, empty HF cache; returns the hub cache folder."""
    monkeypatch.setenv("HF_ENDPOINT", url)
    monkeypatch.setenv("HF_TOKEN", WRITE_TOKEN)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    return set_cache(monkeypatch, home)


def _hub_files(url: str, cache: Path) -> tuple[str, str]:
    """The sha256 of the weights on the Hub's main, and the sha256 its config.json records for them."""
    weights = hf_hub_download(REPO, WEIGHTS, endpoint=url, cache_dir=cache)
    config = read_json(hf_hub_download(REPO, "config.json", endpoint=url, cache_dir=cache))
    return _sha256(weights), config["ltzoo"]["weights_sha256"]


def _cache_problems(cache: Path) -> list[str]:
    """What in an HF cache a later load could wrongly trust: partial downloads, blobs whose bytes are not the
    ones their name (the file's ETag: its git blob sha1) promises, snapshot entries pointing at no blob."""
    problems = []
    for path in sorted(cache.rglob("*")) if cache.exists() else []:
        if ".incomplete" in path.name or path.name.startswith("tmp_"):
            problems.append(f"partial download left behind: {path.relative_to(cache)}")
    for blob in sorted(cache.glob("*/blobs/*")):
        if git_blob_sha1(blob.read_bytes()) != blob.name:
            problems.append(f"blob {blob.relative_to(cache)} does not hold the bytes its name promises")
    for entry in sorted(cache.glob("*/snapshots/*/*")):
        if not entry.exists():  # a dangling symlink
            problems.append(f"snapshot entry {entry.relative_to(cache)} points at no blob")
    return problems


class HubProcess:
    """The local Hub server as a separate process (``python hub_server.py``), so that it can be killed for real.

    ``stall`` flags (``--stall-download PATH`` / ``--stall-commit`` with ``--stall-bytes N``) make it stop at a
    known point and print ``stalled: WHAT``; :meth:`wait_stalled` waits for that line, :meth:`kill` sends SIGKILL.
    """

    def __init__(self, data: Path, port: int, *stall: str) -> None:
        command = [
            sys.executable,
            hub_server.__file__,
            "--port",
            str(port),
            "--token",
            WRITE_TOKEN,
            "--user",
            USER,
            "--orgs",
            ORG,
            "--data",
            str(data),
            *stall,
        ]
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.url = self._next_line()
        assert self.url == f"http://127.0.0.1:{port}", self.url

    def _read(self) -> None:
        with self.proc.stdout:  # ends at EOF: when the process is gone
            for line in self.proc.stdout:
                self.lines.put(line.strip())
        self.lines.put("<exited>")

    def _next_line(self) -> str:
        try:
            return self.lines.get(timeout=TIMEOUT)
        except queue.Empty:
            raise AssertionError(f"the server printed nothing within {TIMEOUT} s") from None

    def wait_stalled(self) -> str:
        line = self._next_line()
        assert line.startswith("stalled: "), f"expected the server to stall, it printed {line!r}"
        return line[len("stalled: ") :]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)  # no cleanup, no goodbye: what a crash or an OOM kill does
        self.proc.wait(timeout=TIMEOUT)


@pytest.fixture
def hub_processes():
    """Start server processes through ``start(...)``; every one still running is killed at teardown."""
    started: list[HubProcess] = []

    def start(data: Path, port: int, *stall: str) -> HubProcess:
        started.append(HubProcess(data, port, *stall))
        return started[-1]

    yield start
    for server in started:
        server.kill()


class InThread:
    """Run ``fn`` in a thread while the test drives the server; ``result()`` returns its value or exception."""

    def __init__(self, fn) -> None:
        self.value: object = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(fn,), daemon=True)
        self.thread.start()

    def _run(self, fn) -> None:
        try:
            self.value = fn()
        except BaseException as exc:  # noqa: BLE001 (handed to the test, which asserts on it)
            self.error = exc

    def result(self) -> tuple[object, BaseException | None]:
        self.thread.join(timeout=TIMEOUT)
        assert not self.thread.is_alive(), f"the call did not return within {TIMEOUT} s"
        return self.value, self.error


def _assert_clear_hub_error(error: BaseException | None, url: str, what: str) -> HubError:
    assert error is not None, f"the {what} succeeded although the server was killed in the middle of it"
    assert isinstance(error, HubError) and isinstance(error, LtzooError), f"{type(error).__name__}: {error}"
    message = str(error)
    assert message.startswith(f"cannot {what} {REPO}") and "cannot be reached" in message and url in message, message
    assert WRITE_TOKEN not in message
    if what.startswith("push"):
        # The fix for a push cut off by the Hub is to push again (a commit is all-or-nothing), not the
        # download-side hint of loading from the cache with HF_HUB_OFFLINE, which a push cannot use.
        assert "HF_HUB_OFFLINE" not in message and "run the push again" in message, message
    else:
        assert "HF_HUB_OFFLINE=1" in message, message  # a load can fall back on files already in the cache
    # No client traceback rides along: the chained exception would print request headers and urls.
    assert error.__cause__ is None and error.__suppress_context__
    return error


# -- 1. four processes cold-load one repo at once ----------------------------------------------------------

# One interpreter imports torch and ltzoo once (seconds of CPU that four interpreters would each spend on the
# shared 2-core machine), then forks the four clients: separate processes, each with its own HTTP session and
# its own file locks, that do nothing before the fork but wait on one pipe, so one write releases all four.
CLIENTS = textwrap.dedent(
    """
    import hashlib, json, os, socket, sys, traceback
    real_getaddrinfo = socket.getaddrinfo
    def local_only(host, *args, **kwargs):  # as the test fixtures do: no name but the local server's
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise OSError(f"tests use no network (tried {host})")
        return real_getaddrinfo(host, *args, **kwargs)
    socket.getaddrinfo = local_only

    import torch
    import ltzoo
    import ltzoo.hub.download, ltzoo.loading  # every import done once, before the fork
    torch.set_num_threads(1)
    source, count, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]

    def client(index):
        model = ltzoo.load(source)
        digest = hashlib.sha256()
        for key, tensor in sorted(model.state_dict().items()):
            digest.update(key.encode() + tensor.detach().cpu().contiguous().numpy().tobytes())
        with torch.no_grad():
            logits = model(torch.randn(2, 1, 28, 28, generator=torch.Generator().manual_seed(11)))
        return {"pid": os.getpid(), "state_sha256": digest.hexdigest(), "logits": logits.tolist()}

    gate_r, gate_w = os.pipe()
    pids = []
    for index in range(count):
        pid = os.fork()
        if pid == 0:
            os.close(gate_w)
            os.read(gate_r, 1)  # the barrier
            try:
                result = {"ok": client(index)}
            except BaseException:
                result = {"error": traceback.format_exc()}
            with open(os.path.join(out, f"client-{index}.json"), "w") as f:
                json.dump(result, f)
            os._exit(0 if "ok" in result else 1)
        pids.append(pid)
    os.write(gate_w, b"g" * count)  # releases all of them at once
    codes = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in pids]
    print(json.dumps(codes))
    """
)


def _state_sha256(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for key, tensor in sorted(model.state_dict().items()):
        digest.update(key.encode() + tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def test_four_processes_cold_load_one_repo_into_one_cache_at_once(tmp_path, monkeypatch):
    clients = 4
    # The weights' GET waits until all four processes have asked for the file's metadata (the HEAD every
    # hf_hub_download sends before downloading): all four are inside the download of one empty cache at once.
    faults = Faults(hold_download=WEIGHTS, hold_until=clients, hold_timeout=TIMEOUT)
    tokens = {WRITE_TOKEN: {"user": USER, "orgs": [ORG], "role": "write"}}
    with LocalHub(tmp_path / "hub-data", tokens, faults=faults) as hub:
        _hub_env(monkeypatch, hub.url, tmp_path / "pusher-home")
        run = make_run(tmp_path / "run", seed=3)
        commit = push_run(run, REPO).oid
        weights_sha = _sha256(run / WEIGHTS)

        home, out = tmp_path / "shared-home", tmp_path / "results"
        out.mkdir()
        env = {
            **os.environ,
            "HF_HOME": str(home),
            "HF_HUB_CACHE": str(home / "hub"),
            "HF_ENDPOINT": hub.url,
            "HF_TOKEN": WRITE_TOKEN,
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "OMP_NUM_THREADS": "1",
        }
        env.pop("HF_HUB_OFFLINE", None)
        done = subprocess.run(
            [sys.executable, "-c", CLIENTS, f"hf-hub:{REPO}", str(clients), str(out)],
            env=env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        results = [read_json(out / f"client-{i}.json") for i in range(clients)]
        assert json.loads(done.stdout.splitlines()[-1]) == [0] * clients, [r.get("error") for r in results]
        assert faults.heads >= clients  # the hold was met: the four downloads really overlapped

    local = load_run(run)[0]
    expected_logits = _logits(local)
    assert len({r["ok"]["pid"] for r in results}) == clients  # four processes
    for result in results:
        got = result["ok"]
        assert got["state_sha256"] == _state_sha256(local)
        assert torch.equal(torch.tensor(got["logits"]), expected_logits)

    # Exactly one valid entry for the weights: one snapshot (the pushed commit) whose model.safetensors links
    # to the one blob holding the pushed bytes; no partial download, no blob with other bytes.
    storage = home / "hub" / STORAGE
    assert [p.name for p in (storage / "snapshots").iterdir()] == [commit]
    snapshot = storage / "snapshots" / commit
    assert sorted(p.name for p in snapshot.iterdir()) == ["config.json", WEIGHTS]
    blob = (snapshot / WEIGHTS).resolve()
    assert blob.parent == storage / "blobs" and _sha256(blob) == weights_sha
    blobs = sorted(p.name for p in (storage / "blobs").iterdir())
    assert blobs == sorted({(snapshot / "config.json").resolve().name, blob.name})  # one per file, nothing else
    assert (storage / "refs" / "main").read_text() == commit
    assert _cache_problems(home / "hub") == []

    # A later load trusts that entry: offline, with no server at all, it gives the pushed weights.
    set_cache(monkeypatch, home)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert torch.equal(_logits(ltzoo.load(f"hf-hub:{REPO}")), expected_logits)


# -- 2. the server is killed in the middle of the weights' download ----------------------------------------


def test_server_killed_mid_download_fails_clearly_and_the_next_load_recovers(tmp_path, monkeypatch, hub_processes):
    data, port = tmp_path / "hub-data", free_port()
    server = hub_processes(data, port)
    cache = _hub_env(monkeypatch, server.url, tmp_path / "home")
    run = make_run(tmp_path / "run", seed=4)
    commit = push_run(run, REPO).oid
    weights = (run / WEIGHTS).read_bytes()
    assert len(weights) > 4 * 65536  # large enough that a 64 KiB prefix is a small part of it
    server.kill()

    # Same storage, same port; this one sends the headers and the first 64 KiB of model.safetensors, then stalls.
    server = hub_processes(data, port, "--stall-download", WEIGHTS, "--stall-bytes", "65536")
    load = InThread(lambda: ltzoo.load(f"hf-hub:{REPO}"))
    assert server.wait_stalled() == f"download {WEIGHTS}"  # the client is mid-way through the weights
    server.kill()
    _, error = load.result()  # after huggingface_hub's own retries: 5, one second apart, to a closed port
    _assert_clear_hub_error(error, server.url, f"download {WEIGHTS} from")

    # Nothing a later load would trust: no weights in the snapshot, no blob of them, no partial file.
    snapshot = cache / STORAGE / "snapshots" / commit
    assert not (snapshot / WEIGHTS).exists() and not (snapshot / WEIGHTS).is_symlink()
    assert not (cache / STORAGE / "blobs" / git_blob_sha1(weights)).exists()
    assert _cache_problems(cache) == []

    # The server comes back with the same data: the next load downloads the weights again and they are right.
    server = hub_processes(data, port)
    model = ltzoo.load(f"hf-hub:{REPO}")
    assert torch.equal(_logits(model), _logits(load_run(run)[0]))
    assert _sha256(snapshot / WEIGHTS) == hashlib.sha256(weights).hexdigest()
    assert _cache_problems(cache) == []


# -- 3. the server is killed in the middle of a push -------------------------------------------------------


def test_server_killed_mid_push_leaves_the_repo_at_its_commit_and_a_retry_succeeds(
    tmp_path, monkeypatch, hub_processes
):
    data, port = tmp_path / "hub-data", free_port()
    server = hub_processes(data, port)
    _hub_env(monkeypatch, server.url, tmp_path / "home")
    run_a, run_b = make_run(tmp_path / "run-a", seed=5), make_run(tmp_path / "run-b", seed=6)
    sha_a, sha_b = _sha256(run_a / WEIGHTS), _sha256(run_b / WEIGHTS)
    assert sha_a != sha_b
    commit_a = push_run(run_a, REPO).oid
    server.kill()

    # Same storage, same port; this one reads the first 64 KiB of the commit upload (the weights go up inline,
    # base64, in that request), then stalls before storing anything.
    server = hub_processes(data, port, "--stall-commit", "--stall-bytes", "65536")
    push = InThread(lambda: push_run(run_b, REPO))
    assert server.wait_stalled() == "commit"
    server.kill()
    _, error = push.result()
    _assert_clear_hub_error(error, server.url, "push to")

    # Restarted on the same storage: still at commit A, with A's files intact.
    server = hub_processes(data, port)
    api = HfApi(endpoint=server.url, token=WRITE_TOKEN)
    assert api.model_info(REPO).sha == commit_a
    assert [c.commit_id for c in api.list_repo_commits(REPO)][0] == commit_a
    assert len(api.list_repo_commits(REPO)) == 2  # the initial commit + A
    assert _hub_files(server.url, tmp_path / "inspect-a") == (sha_a, sha_a)

    # A retry of the same push succeeds and moves the repo to a new commit with B's weights.
    commit_b = push_run(run_b, REPO).oid
    assert commit_b != commit_a
    assert api.model_info(REPO).sha == commit_b
    assert [c.commit_id for c in api.list_repo_commits(REPO)][:2] == [commit_b, commit_a]
    assert _hub_files(server.url, tmp_path / "inspect-b") == (sha_b, sha_b)
    set_cache(monkeypatch, tmp_path / "home-b")
    assert torch.equal(_logits(ltzoo.load(f"hf-hub:{REPO}")), _logits(load_run(run_b)[0]))

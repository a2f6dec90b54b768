"""The local Hub server speaks the protocol the real huggingface_hub client expects (hub-protocol.md).

These checks drive the server (:mod:`ltzoo.testing.hub_server`) with the real client (and raw HTTP where the
client hides a detail, such as response headers), so the ltzoo Hub tests stand on a server that behaves like
huggingface.co for what ltzoo uses.
"""

from __future__ import annotations

import hashlib
import http.client
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from hub_fixtures import ORG, READ_TOKEN, WRITE_TOKEN, isolated_process, local_hub  # noqa: F401 (fixtures)
from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, hf_hub_download
from huggingface_hub.errors import (
    HfHubHTTPError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from ltzoo.testing import hub_server
from ltzoo.testing.hub_server import git_blob_sha1

PAYLOAD = bytes(range(256)) * 40  # 10,240 bytes with a known layout


@pytest.fixture
def api(local_hub) -> HfApi:  # noqa: F811
    return HfApi(endpoint=local_hub.url, token=WRITE_TOKEN)


@pytest.fixture
def repo(api: HfApi) -> str:
    repo_id = f"{ORG}/proto"
    api.create_repo(repo_id)
    api.create_commit(
        repo_id,
        [
            CommitOperationAdd("data.bin", PAYLOAD),
            CommitOperationAdd("sub/dir/a.txt", b"a"),
            CommitOperationAdd("README.md", b"---\nlibrary_name: ltzoo\ntags: [long-tailed]\n---\nhi\n"),
        ],
        commit_message="add files",
    )
    return repo_id


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {})) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_git_blob_sha1_matches_git() -> None:
    # `printf 'hello\n' | git hash-object --stdin` prints this well-known id.
    assert git_blob_sha1(b"hello\n") == "ce013625030ba8dba906f756967f9e9ca394464a"


def test_whoami_and_model_info_with_siblings_and_sha(api: HfApi, repo: str) -> None:
    assert api.whoami()["name"] == "tester"
    info = api.model_info(repo)
    assert sorted(s.rfilename for s in info.siblings) == [".gitattributes", "README.md", "data.bin", "sub/dir/a.txt"]
    assert info.sha == api.list_repo_commits(repo)[0].commit_id
    assert info.library_name == "ltzoo" and info.tags == ["long-tailed"]
    assert [c.title for c in api.list_repo_commits(repo)] == ["add files", "initial commit"]


def test_tree_and_paths_info_report_git_oids(api: HfApi, repo: str) -> None:
    top = {e.path: e for e in api.list_repo_tree(repo)}
    assert set(top) == {".gitattributes", "README.md", "data.bin", "sub"}
    assert top["data.bin"].blob_id == git_blob_sha1(PAYLOAD) and top["data.bin"].size == len(PAYLOAD)
    assert sorted(e.path for e in api.list_repo_tree(repo, recursive=True)) == sorted(
        [".gitattributes", "README.md", "data.bin", "sub", "sub/dir", "sub/dir/a.txt"]
    )
    infos = api.get_paths_info(repo, ["sub/dir/a.txt", "sub", "missing.txt"])
    assert [(type(i).__name__, i.path) for i in infos] == [("RepoFile", "sub/dir/a.txt"), ("RepoFolder", "sub")]


def test_resolve_headers_and_whole_file_for_a_range_request(local_hub, repo: str) -> None:  # noqa: F811
    url = f"{local_hub.url}/{repo}/resolve/main/data.bin"
    status, headers, body = _get(url)
    assert status == 200 and body == PAYLOAD
    assert headers["ETag"] == f'"{git_blob_sha1(PAYLOAD)}"' and len(headers["X-Repo-Commit"]) == 40
    # No Range support: the whole file with 200, which HTTP allows and the client's resume handles (it restarts).
    status, headers, body = _get(url, {"Range": "bytes=256-511"})
    assert status == 200 and body == PAYLOAD and "Accept-Ranges" not in headers


def test_only_model_repos_are_served(api: HfApi) -> None:
    with pytest.raises(HfHubHTTPError) as info:
        api.create_repo(f"{ORG}/data", repo_type="dataset")
    assert info.value.response.status_code == 400 and "model repos only" in str(info.value)


def test_typed_404s_reach_the_client_as_typed_errors(local_hub, repo: str, tmp_path: Path) -> None:  # noqa: F811
    kwargs = {"endpoint": local_hub.url, "cache_dir": tmp_path / "cache"}
    with pytest.raises(RemoteEntryNotFoundError):
        hf_hub_download(repo, "nope.bin", **kwargs)
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(repo, "data.bin", revision="v9", **kwargs)
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download(f"{ORG}/missing", "data.bin", **kwargs)
    _, headers, _ = _get(f"{local_hub.url}/{repo}/resolve/main/nope.bin")
    assert headers["X-Error-Code"] == "EntryNotFound"


def test_download_goes_through_the_cache(local_hub, repo: str, tmp_path: Path) -> None:  # noqa: F811
    path = hf_hub_download(repo, "data.bin", endpoint=local_hub.url, cache_dir=tmp_path / "cache")
    assert hashlib.sha256(Path(path).read_bytes()).hexdigest() == hashlib.sha256(PAYLOAD).hexdigest()
    assert "/snapshots/" in path and Path(path).is_symlink()


def test_writes_need_a_valid_write_token(local_hub) -> None:  # noqa: F811
    statuses = {}
    for label, token in (("missing", False), ("unknown", "hf_not_a_token"), ("read-only", READ_TOKEN)):
        with pytest.raises(HfHubHTTPError) as info:
            HfApi(endpoint=local_hub.url, token=token).create_repo(f"{ORG}/denied")
        statuses[label] = info.value.response.status_code
    assert statuses == {"missing": 401, "unknown": 403, "read-only": 403}
    with pytest.raises(HfHubHTTPError) as info:  # a valid writer outside its namespaces
        HfApi(endpoint=local_hub.url, token=WRITE_TOKEN).create_repo("someone-else/denied")
    assert info.value.response.status_code == 403


def test_private_repos_are_hidden_without_the_owner_token(api: HfApi, local_hub) -> None:  # noqa: F811
    api.create_repo(f"{ORG}/secret", private=True)
    assert api.model_info(f"{ORG}/secret").private is True
    with pytest.raises(RepositoryNotFoundError):
        HfApi(endpoint=local_hub.url, token=False).model_info(f"{ORG}/secret")
    with pytest.raises(RepositoryNotFoundError):
        HfApi(endpoint=local_hub.url, token=READ_TOKEN).model_info(f"{ORG}/secret")


def test_create_repo_twice_is_409_unless_exist_ok(api: HfApi) -> None:
    api.create_repo(f"{ORG}/twice")
    assert api.create_repo(f"{ORG}/twice", exist_ok=True).repo_id == f"{ORG}/twice"
    with pytest.raises(HfHubHTTPError) as info:
        api.create_repo(f"{ORG}/twice")
    assert info.value.response.status_code == 409


def test_stale_parent_commit_is_412_and_changes_nothing(api: HfApi, repo: str) -> None:
    old = api.model_info(repo).sha
    api.create_commit(repo, [CommitOperationAdd("one.txt", b"1")], commit_message="one", parent_commit=old)
    with pytest.raises(HfHubHTTPError) as info:
        api.create_commit(repo, [CommitOperationAdd("two.txt", b"2")], commit_message="two", parent_commit=old)
    assert info.value.response.status_code == 412
    assert "two.txt" not in api.list_repo_files(repo)
    assert [c.title for c in api.list_repo_commits(repo)][:2] == ["one", "add files"]


def test_branches_and_pull_requests(api: HfApi, repo: str) -> None:
    api.create_branch(repo, branch="dev")
    api.create_commit(repo, [CommitOperationAdd("dev.txt", b"d")], commit_message="dev", revision="dev")
    assert "dev.txt" in api.list_repo_files(repo, revision="dev")
    assert "dev.txt" not in api.list_repo_files(repo)
    pr = api.create_commit(repo, [CommitOperationDelete("data.bin")], commit_message="pr", create_pr=True)
    assert pr.pr_revision == "refs/pr/1" and pr.pr_num == 1
    assert "data.bin" not in api.list_repo_files(repo, revision=pr.pr_revision)
    assert "data.bin" in api.list_repo_files(repo)  # main untouched until the PR is merged
    refs = api.list_repo_refs(repo, include_pull_requests=True)
    assert {b.name for b in refs.branches} == {"main", "dev"}
    assert [p.ref for p in refs.pull_requests] == ["refs/pr/1"]


def test_unchanged_files_are_skipped_by_the_client(api: HfApi, repo: str) -> None:
    # preupload returns the remote oid, so re-sending identical bytes makes no new commit.
    before = api.model_info(repo).sha
    api.create_commit(repo, [CommitOperationAdd("data.bin", PAYLOAD)], commit_message="same bytes")
    assert api.model_info(repo).sha == before


def test_server_runs_as_a_script_and_prints_its_url(tmp_path: Path) -> None:
    # By path, as `ltzoo demo` starts it (python -m ltzoo.testing.hub_server runs the same main()).
    command = [sys.executable, hub_server.__file__, "--port", "0", "--token", "T", "--data", str(tmp_path / "d")]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        assert HfApi(endpoint=url, token="T").whoami()["name"] == "ltzoo"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_fault_hooks_stall_mid_download_and_mid_commit_then_drop_the_connection(tmp_path: Path) -> None:
    # The hooks tests/test_hub_faults.py kills the server at, checked here in-thread with raw HTTP and the client.
    faults = hub_server.Faults(
        stall_download="data.bin", stall_bytes=1000, hold_download="other.bin", hold_until=1, hold_timeout=0.2
    )
    tokens = {WRITE_TOKEN: {"user": "tester", "orgs": [ORG], "role": "write"}}
    with hub_server.LocalHub(tmp_path / "d", tokens, faults=faults) as hub:
        api = HfApi(endpoint=hub.url, token=WRITE_TOKEN)
        repo_id, url = f"{ORG}/f", f"{hub.url}/{ORG}/f/resolve/main"
        api.create_repo(repo_id)
        api.create_commit(
            repo_id,
            [CommitOperationAdd("data.bin", PAYLOAD), CommitOperationAdd("other.bin", b"o")],
            commit_message="add",
        )
        head = api.model_info(repo_id).sha
        got: dict[str, object] = {}

        def download() -> None:
            try:
                urllib.request.urlopen(f"{url}/data.bin").read()
            except http.client.IncompleteRead as exc:
                got["partial"], got["missing"] = exc.partial, exc.expected

        def commit() -> None:
            try:
                api.create_commit(repo_id, [CommitOperationAdd("new.bin", PAYLOAD * 20)], commit_message="cut off")
            except Exception as exc:  # noqa: BLE001 (inspected below)
                got["commit"] = exc

        for fn in (download, commit):
            faults.stall_commit = fn is commit
            faults.stalled.clear()
            faults.release.clear()
            worker = threading.Thread(target=fn)
            worker.start()
            assert faults.stalled.wait(10)  # stalled part-way; released, it drops the connection unanswered
            faults.release.set()
            worker.join(10)
            assert not worker.is_alive()
        faults.stall_commit = False
        # The download got the headers (the whole size) and the first 1000 bytes, then the connection died.
        assert got["partial"] == PAYLOAD[:1000] and got["missing"] == len(PAYLOAD) - 1000
        # The cut-off commit failed on the client and stored nothing: the branch is where it was.
        assert isinstance(got["commit"], Exception)
        assert api.model_info(repo_id).sha == head and "new.bin" not in api.list_repo_files(repo_id)

        # A GET held for one HEAD answers 500 when none comes in time, and the file once the HEAD has come.
        assert _get(f"{url}/other.bin")[0] == 500
        with urllib.request.urlopen(urllib.request.Request(f"{url}/other.bin", method="HEAD")) as response:
            assert response.status == 200
        assert _get(f"{url}/other.bin")[::2] == (200, b"o")

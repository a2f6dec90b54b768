"""Download a run pushed by ltzoo: ``config.json`` + ``model.safetensors`` through the Hub cache, sha256-checked.

Everything goes through ``hf_hub_download`` and its cache (so ``HF_HUB_OFFLINE`` and pinned revisions
behave as everywhere else in the HF ecosystem). Only safetensors are ever fetched; pickled weights are
not looked for. The weights' sha256 is checked on every load against the zoo's pinned value or the one
recorded in the repo's ``config.json`` at push time; a mismatching cache entry is deleted so the next
call downloads it again.
"""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import hf_hub_download

from ltzoo import names
from ltzoo.errors import CorruptFileError, HubError
from ltzoo.fileio import read_json, sha256_file
from ltzoo.hub.errors import HubFileMissingError, hub_errors
from ltzoo.hub.settings import HubSettings, hub_settings
from ltzoo.version import __version__


def download_file(repo_id: str, filename: str, revision: str | None, settings: HubSettings) -> Path:
    """One file through ``hf_hub_download`` with the call-time endpoint, token, cache and offline flag."""
    with hub_errors(what=f"download {filename} from", repo_id=repo_id, revision=revision, settings=settings):
        path = hf_hub_download(
            repo_id,
            filename,
            revision=revision,
            endpoint=settings.endpoint,
            token=settings.token,
            cache_dir=settings.cache_dir,
            local_files_only=settings.offline,
            library_name="ltzoo",
            library_version=__version__,
        )
    return Path(path)


def evict_cached_file(path: Path) -> None:
    """Delete a cached file: the snapshot entry and the blob it points to (no dangling half-state)."""
    blob = path.resolve()
    for victim in (path, blob):
        victim.unlink(missing_ok=True)


def _read_ltzoo_config(config_path: Path, repo_id: str) -> dict:
    try:
        config = read_json(config_path, remedy="the cached copy was removed, try again")
    except (OSError, CorruptFileError) as exc:
        evict_cached_file(config_path)
        raise HubError(f"{repo_id}: {exc}") from None
    if not isinstance(config, dict) or not isinstance(config.get(names.CONFIG_BLOCK), dict):
        raise HubError(
            f"{repo_id} has a config.json without an '{names.CONFIG_BLOCK}' block, so it was not pushed by ltzoo. "
            f"Push a training run with `ltzoo push --model RUN_DIR --repo-id {repo_id}`, or load this repo with the "
            "library that made it (e.g. timm.create_model('hf-hub:...'))."
        )
    return config


def download_run(repo_id: str, revision: str | None = None, *, expected_sha256: str | None = None) -> Path:
    """Fetch a pushed run into the Hub cache; return the snapshot directory with config.json + model.safetensors.

    ``expected_sha256`` (a zoo entry's pinned value) wins over the sha256 recorded in the repo's
    config.json. Raises :class:`HubError` for an unreachable Hub, a refused token, a missing
    repo/revision, a repo without an ltzoo config, and a sha256 mismatch (after deleting the bad file).
    """
    settings = hub_settings()
    try:
        config_path = download_file(repo_id, names.CONFIG_FILE, revision, settings)
    except HubFileMissingError:
        where = f"{repo_id}@{revision}" if revision else repo_id
        raise HubError(
            f"{where} has no config.json, so it was not pushed by ltzoo. "
            f"Push a training run with `ltzoo push --model RUN_DIR --repo-id {repo_id}`."
        ) from None
    config = _read_ltzoo_config(config_path, repo_id)
    # The snapshot folder is named by the commit that `revision` resolved to; fetching the weights at that
    # commit keeps both files from the same commit even if the branch moves in between.
    commit = config_path.parent.name
    weights_path = download_file(repo_id, names.MODEL_FILE, commit, settings)
    if weights_path.parent != config_path.parent:  # e.g. a cache laid out by an older client
        raise HubError(
            f"{repo_id}: config.json and model.safetensors resolved to different snapshots; "
            f"clear {settings.cache_dir} and retry"
        )

    expected = expected_sha256 or config[names.CONFIG_BLOCK].get(names.WEIGHTS_SHA256_KEY)
    if not expected:
        raise HubError(
            f"{repo_id}@{commit} records no sha256 for {names.MODEL_FILE} "
            f"({names.CONFIG_FILE} {names.CONFIG_BLOCK}.{names.WEIGHTS_SHA256_KEY}); "
            "re-push the run with a current `ltzoo push`, or pass expected_sha256."
        )
    actual = sha256_file(weights_path)
    if actual != expected.lower():
        evict_cached_file(weights_path)
        raise HubError(
            f"{repo_id}@{commit}: {names.MODEL_FILE} has sha256 {actual}, expected {expected}. The corrupted cache "
            "entry was deleted, so the next load downloads it again. If this repeats, the file on the Hub differs "
            "from the pinned one: re-push the run or update the pinned sha256."
        )
    return config_path.parent

"""Turn ``huggingface_hub`` / transport exceptions into one :class:`~ltzoo.errors.HubError` that says the fix.

Every message goes through :func:`redact` so a token can never leak into an error or a log line.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils import httpx  # the transport huggingface_hub itself uses (httpx in 1.x, httpx2 in 2.x)

from ltzoo.errors import HubError, LtzooError
from ltzoo.hub.settings import HubSettings


class HubFileMissingError(HubError):
    """The repo and revision exist but a file is not in them (callers turn this into a specific message)."""


def redact(text: str, token: str | None) -> str:
    return text.replace(token, "***") if token else text


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    # huggingface_hub puts the server's own message last; the first line is the status and url.
    return " | ".join(lines[:1] + lines[-1:]) if len(lines) > 1 else (lines[0] if lines else type(exc).__name__)


def _caused_by_transport(exc: BaseException) -> bool:
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, httpx.TransportError | ConnectionError | TimeoutError):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def describe(exc: BaseException, *, what: str, repo_id: str, revision: str | None, settings: HubSettings) -> str:
    """A one-paragraph message naming the problem and the fix (token-free)."""
    where = f"{repo_id}@{revision}" if revision else repo_id
    endpoint = settings.endpoint
    if isinstance(exc, LocalEntryNotFoundError | OfflineModeIsEnabled) and settings.offline:
        return (
            f"cannot {what} {where}: HF_HUB_OFFLINE is set and the files are not in the Hub cache "
            f"({settings.cache_dir}). Unset HF_HUB_OFFLINE to download them once, or point HF_HUB_CACHE at a "
            "cache that has them."
        )
    if _caused_by_transport(exc):
        # The cache fallback is a download's remedy only. A push has no cached copy to fall back on: it told
        # users to set HF_HUB_OFFLINE=1 even when the Hub died in the middle of their commit. A commit lands
        # whole or not at all, so the fix for a push is to run it again.
        remedy = (
            "once it answers, run the push again (a commit lands whole or not at all)"
            if what.startswith("push")
            else "to use files already in the cache, set HF_HUB_OFFLINE=1"
        )
        return (
            f"cannot {what} {where}: the Hub at {endpoint} cannot be reached ({type(exc).__name__}). Check the "
            f"network and HF_ENDPOINT / --endpoint; {remedy}."
        )
    if isinstance(exc, LocalEntryNotFoundError):
        return (
            f"cannot {what} {where}: the Hub at {endpoint} did not answer usably and the files are not cached "
            f"({_first_line(exc)}). Check HF_ENDPOINT / --endpoint."
        )
    if isinstance(exc, RevisionNotFoundError):
        return (
            f"cannot {what} {where}: revision {revision!r} does not exist in {repo_id} at {endpoint}. "
            "Use an existing branch, tag or commit sha (HfApi().list_repo_refs lists them)."
        )
    if isinstance(exc, GatedRepoError):
        return f"cannot {what} {where}: the repo is gated; accept its terms on the Hub and set HF_TOKEN."
    if isinstance(exc, RepositoryNotFoundError):
        return (
            f"cannot {what} {where}: repo {repo_id} does not exist at {endpoint}, or it is private and the token "
            "has no access. Check the repo id, HF_ENDPOINT, and HF_TOKEN."
        )
    if isinstance(exc, RemoteEntryNotFoundError):
        return f"cannot {what} {where}: a file is missing from the repo ({_first_line(exc)})."
    if isinstance(exc, HfHubHTTPError) and exc.response is not None:
        status = exc.response.status_code
        if status in (401, 403):
            return (
                f"cannot {what} {where}: the Hub at {endpoint} refused the token (HTTP {status}). Set HF_TOKEN "
                f"(or --token) to a valid token with {'write' if what.startswith('push') else 'read'} access "
                f"to {repo_id.split('/')[0]!r}."
            )
        if status == 412:
            return (
                f"cannot {what} {where}: the branch moved on the Hub while pushing (HTTP 412, stale parent "
                "commit), so nothing was committed. Run the push again."
            )
        return f"cannot {what} {where}: the Hub at {endpoint} answered HTTP {status} ({_first_line(exc)})."
    return f"cannot {what} {where}: {type(exc).__name__}: {_first_line(exc)}"


@contextlib.contextmanager
def hub_errors(*, what: str, repo_id: str, revision: str | None, settings: HubSettings) -> Iterator[None]:
    """Re-raise anything the Hub client raises as a token-free :class:`HubError` (ltzoo errors pass through)."""
    try:
        yield
    except LtzooError as exc:
        if settings.token and settings.token in str(exc):
            raise HubError(redact(str(exc), settings.token)) from None
        raise
    except (
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        httpx.TransportError,
        OSError,
        ValueError,
    ) as exc:
        message = redact(
            describe(exc, what=what, repo_id=repo_id, revision=revision, settings=settings), settings.token
        )
        # Only the Hub saying "no such file" is a missing file; LocalEntryNotFoundError (also an
        # EntryNotFoundError) means "not cached and the Hub could not be asked".
        error_type = HubFileMissingError if isinstance(exc, RemoteEntryNotFoundError) else HubError
        # `from None`: the chained client exception would print request headers and urls; the message has what matters.
        raise error_type(message) from None

"""Is a Hugging Face model on this machine, or can the hub be reached? Quick answers, so a run refuses at start
instead of after minutes of retries deep inside a download."""

from __future__ import annotations


def hub_snapshot_on_disk(hub_id: str) -> bool:
    from huggingface_hub import snapshot_download

    try:
        snapshot_download(hub_id, local_files_only=True)
        return True
    except Exception:  # any miss (not cached, partial) means "not on disk"
        return False


def hub_model_available(hub_id: str) -> bool:
    """True if `hub_id` is on disk already or the hub answers; a quick check so a run refuses at start, not after
    minutes of retries deep inside a download."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if hub_snapshot_on_disk(hub_id):
        return True
    if constants.HF_HUB_OFFLINE:
        return False
    endpoint = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((endpoint.hostname, endpoint.port or 443), timeout=3).close()
        return True
    except OSError:
        return False

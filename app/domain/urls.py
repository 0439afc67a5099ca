"""URL checks shared by the node types that reach a server (``http``, ``mcp``)."""

from __future__ import annotations

from urllib.parse import urlsplit


def check_http_url(url: str) -> None:
    """Raise ValueError unless ``url`` is an absolute http(s) URL with a host.

    The message never repeats the URL: it may carry credentials or secret query parameters.
    """
    try:
        parts = urlsplit(url)
        _ = parts.port  # a malformed port raises here
    except ValueError:
        raise ValueError("url is not a valid URL") from None
    if parts.scheme.lower() not in ("http", "https"):
        shown = f"scheme {parts.scheme!r}" if parts.scheme else "no scheme"
        raise ValueError(f"url must be an absolute http:// or https:// URL (it has {shown})")
    if not parts.hostname:
        raise ValueError("url has no host")

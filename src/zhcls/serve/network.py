"""Checks on ``--host`` / ``--port`` made before the model is loaded: can the address be bound
(:func:`check_bindable`, a one-line :class:`~zhcls.errors.ConfigError` otherwise), and is the
service open beyond this machine without an API key (:func:`exposure_warning`)."""

from __future__ import annotations

import errno
import ipaddress
import socket

from zhcls.errors import ConfigError

LOOPBACK_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost")


def is_loopback(host: str) -> bool:
    """True for an address only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may well be reachable from elsewhere
        return False


def exposure_warning(host: str, api_key: str | None) -> str | None:
    """The warning to log when ``host`` is reachable from other machines and no API key is
    required; None otherwise."""
    if api_key or is_loopback(host):
        return None
    return (f"serving on --host {host!r} without an API key: anyone who can reach this "
            "address can use the service; turn the key on with --api-key-env NAME (export "
            "ZHCLS_API_KEY=$(openssl rand -hex 32); zhcls serve CKPT --host "
            f"{host} --api-key-env ZHCLS_API_KEY) or serve on --host 127.0.0.1")


def check_bindable(host: str, port: int) -> None:
    """Bind (and release) every address ``host`` resolves to on ``port`` as uvicorn will
    (asyncio ``create_server``: passive, ``SO_REUSEADDR``); a one-line ``ConfigError`` naming
    ``--host``/``--port`` and the fix when that fails."""
    where = f"--host {host} --port {port}"
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(f"{where}: cannot resolve the host ({exc.strerror}); use an address "
                          "of this machine, 127.0.0.1 or 0.0.0.0") from None
    for family, kind, proto, _, address in dict.fromkeys(infos):
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6 and hasattr(socket, "IPPROTO_IPV6"):
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(address)
            except OSError as exc:
                raise ConfigError(f"{where}: {_bind_problem(exc, port)}") from None


def _bind_problem(exc: OSError, port: int) -> str:
    """What a failed bind means, and what to do about it."""
    if exc.errno == errno.EADDRINUSE:
        return (f"port {port} is already in use by another process; pick another --port or "
                f"stop the process listening on it (e.g. `ss -ltnp | grep :{port}`)")
    if exc.errno == errno.EACCES:
        return (f"no permission to bind port {port} (ports below 1024 need root); pick "
                "--port 1024 or above")
    if exc.errno == errno.EADDRNOTAVAIL:
        return ("this machine has no such address; use one of its own addresses, 127.0.0.1 "
                "or 0.0.0.0")
    return f"cannot bind the address ({exc.strerror or exc}); pick another --host or --port"

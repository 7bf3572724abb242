"""What processes of one machine share through the data directory: exclusive roles held by an flock
(the index writer, the push deliverer) and Unix datagram sockets (the change bus, the deliverer's
wake-ups)."""

from __future__ import annotations

import fcntl
import os
import socket


def try_lock(path: str) -> int | None:
    """An open descriptor holding an exclusive flock on path (created 0600), or None when another
    process holds it. The lock lasts until `unlock` or the process's end (also a kill -9)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def unlock(fd: int) -> None:
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


def close_socket(loop, sock: socket.socket, path: str) -> None:
    """Stops watching a bound datagram socket on the event loop, closes it and removes its file."""
    try:
        loop.remove_reader(sock.fileno())
    except Exception:  # noqa: BLE001 - the loop is already closing
        pass
    sock.close()
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass

"""Who holds a lease: host, process id and process start time, so a dispatcher on the same host
can tell at once that the holder is gone (a reused pid has another start time)."""
import os
import socket
from functools import lru_cache


def _start_ticks(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            # Field 22 is the start time; the command name (field 2) may hold spaces, so split
            # after its closing parenthesis.
            return stat.read().rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError):
        return "?"


@lru_cache(maxsize=1)
def this_host() -> str:
    """This host's name in leases and heartbeats: REBOUND_HOST_ID, or the host name."""
    from django.conf import settings

    return settings.REBOUND["HOST_ID"] or socket.gethostname()


def host_of(holder: str) -> str:
    return holder.rsplit(":", 2)[0] if holder.count(":") >= 2 else ""


def holder_id() -> str:
    """This process as a lease holder: "host:pid:start"."""
    pid = os.getpid()
    return f"{this_host()}:{pid}:{_start_ticks(pid)}"


def holder_is_dead(holder: str) -> bool:
    """True only when the holder ran on this host and its process is certainly gone."""
    try:
        host, pid, start = holder.rsplit(":", 2)
        pid = int(pid)
    except ValueError:
        return False
    if host != this_host() or start == "?":
        return False
    return _start_ticks(pid) != start


def holder_pids_on_this_host(holders) -> list[int]:
    """The process ids of those lease holders that run on this host."""
    pids = []
    for holder in holders:
        try:
            host, pid, _ = holder.rsplit(":", 2)
            if host == this_host():
                pids.append(int(pid))
        except ValueError:
            continue
    return pids

"""Who is at the other end of a local dashboard request: a loop's agent, or not (issue 11).

An agent runs as the user, on the same machine, and could reach the local dashboard over
loopback (``curl -X POST http://127.0.0.1:8765/api/loops/<id>/limits``) as the dashboard's
user. :func:`loop_of_client` finds the process holding the client's end of the connection and
tells whether it belongs to a running loop of the dashboard's state folder; the dashboard then
authorizes the request as that loop's ``Agent::"<loop_id>"``.

How: the client socket's inode is read from ``/proc/net/tcp`` and ``/proc/net/tcp6`` (its row
has the client's port as local port); then the running commands of the state folder's loops (their
ledgers: each supervisor and everything below it) are searched for a file descriptor on that
socket. With no loop running there is nothing to search, so a request of a human costs one read
of each table. Linux only; elsewhere (no ``/proc``) every request is the human's.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from loopwright.adapters.local.processes import running_records
from loopwright.adapters.local.supervisor import all_stats, descendants

_TABLES = ("/proc/net/tcp", "/proc/net/tcp6")


def loop_of_client(state_dir: Path, event: Mapping[str, Any]) -> str | None:
    """The id of the running loop of ``state_dir`` whose processes sent the request ``event``
    (an API Gateway proxy event whose ``requestContext.identity`` has ``sourceIp`` and
    ``sourcePort``, as the local server builds them), or None."""
    identity = (event.get("requestContext") or {}).get("identity") or {}
    port = identity.get("sourcePort")
    if not isinstance(port, int):
        return None
    loops: dict[str, list[int]] = {}
    for loop_id, record in running_records(state_dir):
        loops.setdefault(loop_id, []).append(record.supervisor_pid)
    if not loops:
        return None
    inode = client_socket_inode(str(identity.get("sourceIp") or ""), port)
    if inode is None:
        return None
    wanted = f"socket:[{inode}]"
    stats = all_stats()
    for loop_id, roots in loops.items():
        for root in roots:
            for pid in [root, *(stat.pid for stat in descendants(root, stats))]:
                if _holds(pid, wanted):
                    return loop_id
    return None


def client_socket_inode(ip: str, port: int) -> int | None:
    """The inode of the TCP socket whose local end is ``ip``:``port`` (the client's end of a
    loopback connection), or None."""
    try:
        wanted_ip = ipaddress.ip_address(ip)
    except ValueError:
        return None
    if isinstance(wanted_ip, ipaddress.IPv6Address) and wanted_ip.ipv4_mapped is not None:
        wanted_ip = wanted_ip.ipv4_mapped
    for table in _TABLES:
        try:
            with open(table, encoding="ascii") as handle:
                rows = handle.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if len(fields) < 10:
                continue
            address, _, hex_port = fields[1].partition(":")
            if int(hex_port, 16) != port:
                continue
            found = _address(address)
            if found is not None and found == wanted_ip:
                return int(fields[9])
    return None


def _address(hex_address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An address as ``/proc/net/tcp*`` writes it: 32-bit words in the host's (little-endian)
    order; an IPv4-mapped IPv6 address is returned as IPv4."""
    try:
        raw = bytes.fromhex(hex_address)
    except ValueError:
        return None
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    if len(words) == 4:
        return ipaddress.IPv4Address(words)
    if len(words) == 16:
        address = ipaddress.IPv6Address(words)
        return address.ipv4_mapped or address
    return None


def _holds(pid: int, target: str) -> bool:
    """True when process ``pid`` has a file descriptor on ``target`` (``socket:[inode]``)."""
    folder = f"/proc/{pid}/fd"
    try:
        names = os.listdir(folder)
    except OSError:
        return False
    for name in names:
        try:
            if os.readlink(f"{folder}/{name}") == target:
                return True
        except OSError:
            continue
    return False

"""Listening TCP sockets from the kernel's sock_diag netlink interface, LISTEN state only.

`identity.observe` needs the inodes of Apache's listening TCP sockets (MPM
workers hold them, mod_wsgi daemons close them).  /proc/net/tcp and tcp6 list
every TCP socket on the host as text, which the kernel formats on each read:
it grows with every connection (a busy web host has thousands).  Asked through
sock_diag with a state filter, the kernel sends only the listeners, as binary
records (the interface `ss -l` uses).

Layouts, from the kernel's UAPI headers: `struct nlmsghdr` (linux/netlink.h,
16 bytes), `struct inet_diag_req_v2` and `struct inet_diag_msg`
(linux/inet_diag.h: family, state, timer, retrans, a 48-byte
`inet_diag_sockid`, then expires, rqueue, wqueue, uid, inode),
SOCK_DIAG_BY_FAMILY = 20 (linux/sock_diag.h), TCP_LISTEN = 10
(include/net/tcp_states.h).  Any user may dump sockets this way.
"""

from __future__ import annotations

import os
import socket
import struct

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300
NLMSG_ERROR = 0x2
NLMSG_DONE = 0x3
TCP_LISTEN = 10
_HEADER = struct.Struct("=IHHII")  # nlmsghdr: len, type, flags, seq, pid
_REQUEST = struct.Struct("=BBBxI48x")  # inet_diag_req_v2: family, protocol, ext, states, id
_INODE_OFFSET = 4 + 48 + 16  # in inet_diag_msg: after family..retrans, the id, expires..uid


class SockDiagError(Exception):
    """The kernel refused or garbled the request: read /proc/net/tcp instead."""


def listening_tcp_inodes(timeout: float = 2.0) -> set[int]:
    """Inodes of every listening TCP socket (IPv4 and IPv6). Raises SockDiagError."""
    inodes: set[int] = set()
    try:
        with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG) as sock:
            sock.settimeout(timeout)
            for seq, family in enumerate((socket.AF_INET, socket.AF_INET6), 1):
                inodes |= _dump(sock, seq, family)
    except OSError as err:
        raise SockDiagError(str(err)) from err
    return inodes


def _dump(sock: socket.socket, seq: int, family: int) -> set[int]:
    body = _REQUEST.pack(family, socket.IPPROTO_TCP, 0, 1 << TCP_LISTEN)
    header = _HEADER.pack(
        _HEADER.size + len(body), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, seq, 0
    )
    sock.send(header + body)
    found: set[int] = set()
    while True:
        data = sock.recv(1 << 16)
        pos = 0
        while pos + _HEADER.size <= len(data):
            length, kind, _flags, got_seq, _pid = _HEADER.unpack_from(data, pos)
            if length < _HEADER.size or pos + length > len(data):
                raise SockDiagError(f"truncated netlink message ({length} bytes)")
            if got_seq == seq:
                if kind == NLMSG_DONE:
                    return found
                if kind == NLMSG_ERROR:
                    (errno,) = struct.unpack_from("=i", data, pos + _HEADER.size)
                    raise SockDiagError(os.strerror(-errno) if errno else "netlink error")
                if kind == SOCK_DIAG_BY_FAMILY:
                    state = data[pos + _HEADER.size + 1]
                    (inode,) = struct.unpack_from("=I", data, pos + _HEADER.size + _INODE_OFFSET)
                    if state == TCP_LISTEN:
                        found.add(inode)
            pos += (length + 3) & ~3

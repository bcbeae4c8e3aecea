"""Chromium in a network namespace of its own, reaching the hub on the host through a unix socket.

Why: Chromium aborts its in-flight requests with ERR_NETWORK_CHANGED whenever an address appears
or goes on any interface it can see, and Docker adds a veth interface (which gets an IPv6
link-local address) for every container it starts. A browser test that starts containers, on a
machine where anything else may start containers too, loses page loads to that at random. In a
namespace of its own Chromium sees only its loopback interface, which never changes.

    host:  127.0.0.1:PORT (the proxy)  <-  relay  <-  unix socket  <-  relay  <-  127.0.0.1:PORT
                                          (host_relay)               (in the namespace)  Chromium

The page keeps the URL it would have on the host (`http://127.0.0.1:PORT/...`), so cookies and the
hub's redirects are unchanged. Used as Playwright's `executable_path` through a small wrapper:

    netns_chromium.py CHROMIUM-ARGS...   (env E2E_CHROMIUM, E2E_RELAY_SOCKET, E2E_RELAY_PORT)
    netns_chromium.py --host-relay SOCKET PORT

Needs CAP_SYS_ADMIN (root) for the namespace; without it Chromium runs as it is, on the host's
network, with a warning on stderr.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import socket
import struct
import sys
import threading
from collections.abc import Callable

CLONE_NEWNET = 0x40000000
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1


def pump(src: socket.socket, dst: socket.socket) -> None:
    """Copy src to dst until src ends, then end dst's sending side."""
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


def relay(listener: socket.socket, connect: Callable[[], socket.socket]) -> None:
    """Accept on `listener` forever; join each connection to a new `connect()` one."""
    while True:
        try:
            client, _ = listener.accept()
        except TimeoutError:
            continue
        except OSError:
            return
        client.settimeout(None)
        try:
            upstream = connect()
        except OSError:
            client.close()
            continue

        def both(a: socket.socket = client, b: socket.socket = upstream) -> None:
            t = threading.Thread(target=pump, args=(b, a), daemon=True)
            t.start()
            pump(a, b)
            t.join()
            a.close()
            b.close()

        threading.Thread(target=both, daemon=True).start()


def host_relay(path: str, port: int) -> None:
    """On the host: the unix socket `path` leads to 127.0.0.1:`port`."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    relay(listener, lambda: socket.create_connection(("127.0.0.1", port), timeout=None))


def loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        ifreq = fcntl.ioctl(s.fileno(), SIOCGIFFLAGS, struct.pack("16sH14x", b"lo", 0))
        flags = struct.unpack("16sH14x", ifreq)[1]
        fcntl.ioctl(s.fileno(), SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | IFF_UP))


def chromium(args: list[str]) -> None:
    binary = os.environ["E2E_CHROMIUM"]
    path = os.environ["E2E_RELAY_SOCKET"]
    port = int(os.environ["E2E_RELAY_PORT"])
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        print(
            f"netns_chromium: no network namespace ({os.strerror(err)}); Chromium runs on the "
            "host's network and may see ERR_NETWORK_CHANGED when containers start",
            file=sys.stderr,
        )
        os.execv(binary, [binary, *args])
    loopback_up()
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(64)
    browser_pid = os.getpid()
    if os.fork() == 0:
        # The relay, in the namespace, for as long as the browser (our parent) lives.
        listener.settimeout(0.5)

        def connect() -> socket.socket:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(path)
            return s

        def watch() -> None:
            while os.getppid() == browser_pid:
                threading.Event().wait(0.5)
            os._exit(0)

        threading.Thread(target=watch, daemon=True).start()
        relay(listener, connect)
        os._exit(0)
    listener.close()
    os.execv(binary, [binary, *args])


if __name__ == "__main__":
    if sys.argv[1:2] == ["--host-relay"]:
        host_relay(sys.argv[2], int(sys.argv[3]))
    else:
        chromium(sys.argv[1:])

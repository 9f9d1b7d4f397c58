"""A throwaway nginx in front of ``streamcore serve`` for tests: loopback, an ephemeral port.

``running_nginx(upstreams, tmp_path=...)`` renders ``docs/nginx.conf`` (the config the README
shows) with its upstream block pointing at ``upstreams`` and its ``listen`` line at a free
loopback port, starts the Debian ``nginx`` in the foreground with every file it writes (pid,
logs, temp folders) under ``tmp_path``, waits until it listens, yields the port, and stops it
after. It skips the test when nginx is not installed. ``running_nginx_site`` does the same for
an edited copy of the file (the buffering negative control in ``tests/test_nginx.py``).

nginx runs as root and as any other user: as root its workers would switch to ``nobody``, who
cannot enter pytest's private ``tmp_path``, so the rendered config names the current user.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

__all__ = [
    "DOCS_CONF",
    "NginxError",
    "find_nginx",
    "render_site",
    "running_nginx",
    "running_nginx_site",
]

DOCS_CONF = Path(__file__).resolve().parent.parent / "docs" / "nginx.conf"
"""The nginx configuration the README shows; the tests run exactly this file."""

_START_TIMEOUT = 10.0
_STOP_TIMEOUT = 10.0
_PORT_ATTEMPTS = 3
_UPSTREAM_BLOCK = re.compile(r"(^upstream streamcore \{\n)(.*?)(^\})", re.MULTILINE | re.DOTALL)
_LISTEN = re.compile(r"^(\s*)listen 80;", re.MULTILINE)


class NginxError(RuntimeError):
    """nginx did not start, or did not stop; the message carries its error log."""


def find_nginx() -> str | None:
    """The nginx binary: on ``PATH``, or Debian's ``/usr/sbin/nginx`` (not on a user's PATH)."""
    found = shutil.which("nginx")
    if found is None and os.access("/usr/sbin/nginx", os.X_OK):
        found = "/usr/sbin/nginx"
    return found


def render_site(site: str, upstreams: Sequence[tuple[str, int]], port: int) -> str:
    """``site`` (the text of docs/nginx.conf) proxying to ``upstreams``, listening on ``port``.

    Only the ``server`` lines of ``upstream streamcore { }`` and the ``listen 80;`` line
    change; raises :class:`NginxError` if the file no longer has exactly one of each, so an
    edit of the documented config cannot leave the test running a different one.

    >>> print(render_site("upstream streamcore {\\n    server a:1;\\n}\\nlisten 80;\\n",
    ...                   [("127.0.0.1", 8001), ("::1", 8002)], 9000))
    upstream streamcore {
        server 127.0.0.1:8001;
        server [::1]:8002;
    }
    listen 127.0.0.1:9000;
    <BLANKLINE>
    """
    if not upstreams:
        raise NginxError("no upstreams: pass at least one (host, port) of a streamcore serve")
    servers = "".join(
        f"    server {f'[{host}]' if ':' in host else host}:{upstream_port};\n"
        for host, upstream_port in upstreams
    )
    site, blocks = _UPSTREAM_BLOCK.subn(lambda m: m[1] + servers + m[3], site)
    site, listens = _LISTEN.subn(lambda m: f"{m[1]}listen 127.0.0.1:{port};", site)
    if (blocks, listens) != (1, 1):
        raise NginxError(
            f"{DOCS_CONF.name} must have one 'upstream streamcore {{ ... }}' block and one "
            f"'listen 80;' line for the tests to rewrite (found {blocks} and {listens})"
        )
    return site


def _main_config(site: str, folder: Path, extra_http: str) -> str:
    """A whole nginx.conf around ``site`` with every path inside ``folder``."""

    def path(name: str) -> str:
        return '"' + str(folder / name).replace("\\", "\\\\").replace('"', '\\"') + '"'

    # As root the workers drop to `nobody`, who cannot read pytest's 0700 tmp_path: keep
    # them as the current user. Not root: the directive would only log a warning, so omit it.
    user = ""
    if os.geteuid() == 0:
        user = f"user {pwd.getpwuid(os.geteuid()).pw_name} {grp.getgrgid(os.getegid()).gr_name};"
    return f"""{user}
worker_processes 1;
pid {path("nginx.pid")};
error_log {path("error.log")} info;
events {{
    worker_connections 1024;
}}
http {{
    access_log {path("access.log")};
    client_body_temp_path {path("client_body")};
    proxy_temp_path {path("proxy")};
    fastcgi_temp_path {path("fastcgi")};
    uwsgi_temp_path {path("uwsgi")};
    scgi_temp_path {path("scgi")};
    default_type application/octet-stream;
{extra_http}
{site}
}}
"""


def _free_port() -> int:
    # Race: the port is free when this socket closes, and another process may take it
    # before nginx binds. nginx then fails with "Address already in use", which
    # _start() recognises in its log and retries on a new port.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _log(folder: Path) -> str:
    text = ""
    for name in ("error.log", "stderr.log"):
        with contextlib.suppress(OSError):
            text += (folder / name).read_text(errors="replace")
    return text[-4000:] or "(empty)"


def _stop(proc: subprocess.Popen[bytes], folder: Path, port: int) -> None:
    """SIGTERM (nginx's fast shutdown), wait, and check nothing listens on ``port`` any more."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise NginxError(
                f"nginx (pid {proc.pid}) ignored SIGTERM for {_STOP_TIMEOUT:g} s and was "
                f"killed; its log:\n{_log(folder)}"
            ) from None
    if _accepts(port):
        raise NginxError(
            f"nginx exited but 127.0.0.1:{port} still accepts connections (a worker left "
            f"behind?); its log:\n{_log(folder)}"
        )


def _start(
    binary: str, folder: Path, config_for: Callable[[int], str]
) -> tuple[subprocess.Popen[bytes], int]:
    """Start nginx with ``config_for(port)`` and wait until it listens on ``port``."""
    conf = folder / "nginx.conf"
    for attempt in range(1, _PORT_ATTEMPTS + 1):
        port = _free_port()
        conf.write_text(config_for(port))
        for name in ("error.log", "nginx.pid"):
            (folder / name).unlink(missing_ok=True)
        argv = [binary, "-p", str(folder), "-c", str(conf), "-e", str(folder / "error.log")]
        with open(folder / "stderr.log", "wb") as stderr:
            proc = subprocess.Popen(
                [*argv, "-g", "daemon off;"], stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr
            )
        pidfile = folder / "nginx.pid"
        deadline = time.monotonic() + _START_TIMEOUT
        # nginx writes its pid file after it has bound every listening socket, so a pid
        # file naming our process means the port is ours (not a squatter answering).
        while True:
            if proc.poll() is not None:
                log = _log(folder)
                if "Address already in use" in log and attempt < _PORT_ATTEMPTS:
                    break  # lost the race for the port: try another
                raise NginxError(
                    f"nginx exited with status {proc.returncode} at start; its log:\n{log}"
                )
            with contextlib.suppress(OSError, ValueError):
                if int(pidfile.read_text()) == proc.pid and _accepts(port):
                    return proc, port
            if time.monotonic() > deadline:
                _stop(proc, folder, port)
                raise NginxError(
                    f"nginx did not listen on 127.0.0.1:{port} within {_START_TIMEOUT:g} s; "
                    f"its log:\n{_log(folder)}"
                )
            time.sleep(0.01)  # polling a process start, bounded by the deadline
    raise AssertionError("unreachable: the last attempt returns or raises")


@contextlib.contextmanager
def running_nginx_site(
    site: str, upstreams: Sequence[tuple[str, int]], *, tmp_path: Path, extra_http: str = ""
) -> Iterator[int]:
    """Like :func:`running_nginx`, with ``site`` (an edited docs/nginx.conf) as the config."""
    binary = find_nginx()
    if binary is None:
        pytest.skip("nginx is not installed (the Debian package nginx)")
    folder = Path(tempfile.mkdtemp(prefix="nginx-", dir=tmp_path))
    render_site(site, upstreams, 0)  # a config the tests cannot rewrite fails before a start

    def config_for(port: int) -> str:
        return _main_config(render_site(site, upstreams, port), folder, extra_http)

    proc, port = _start(binary, folder, config_for)
    try:
        yield port
    finally:
        _stop(proc, folder, port)


@contextlib.contextmanager
def running_nginx(
    upstreams: Sequence[tuple[str, int]], *, tmp_path: Path, extra_http: str = ""
) -> Iterator[int]:
    """Start nginx on 127.0.0.1:<ephemeral port> proxying to ``upstreams`` (round-robin, no
    stickiness) with the docs/nginx.conf location; yield its port; stop it (and check it
    stopped) on exit. pytest.skip()s if nginx is not installed.

    ``extra_http`` is added inside ``http { }`` before the site (a ``log_format``, a
    ``map``). nginx's files are in a fresh folder under ``tmp_path``; a start failure
    raises :class:`NginxError` with nginx's error log::

        async with open_server(ServeConfig(port=0)) as server:
            with running_nginx([(server.host, server.port)], tmp_path=tmp_path) as port:
                ...  # http://127.0.0.1:{port}/v1/streams
    """
    with running_nginx_site(
        DOCS_CONF.read_text(), upstreams, tmp_path=tmp_path, extra_http=extra_http
    ) as port:
        yield port

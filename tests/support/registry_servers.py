"""Real `docker-registry` processes for tests: anonymous, htpasswd (Basic) and token (Bearer) auth.

The token server is ours: a threaded stdlib HTTP server issuing JWTs the registry accepts, signed by a
self-signed certificate sent in the ``x5c`` header and trusted through ``rootcertbundle``.
"""

from __future__ import annotations

import base64
import datetime as dt
import http.server
import json
import os
import secrets
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt
import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

import world
from tests.support.net import free_port

SERVICE = "binder-test-registry"
ISSUER = "binder-test-issuer"


# --- token server -----------------------------------------------------------------------------------


@dataclass
class TokenServer:
    """Issues registry JWTs to ``username:password`` (Basic, or an OAuth2 password grant) or to a
    refresh token; counts requests so tests can see the client's token cache at work."""

    username: str
    password: str
    refresh_token: str
    cert_path: Path
    expires_in: int = 300
    requests: int = 0
    _key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    _x5c: str = ""
    _httpd: http.server.ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ISSUER)])
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .sign(self._key, hashes.SHA256())
        )
        self.cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self._x5c = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()

    @property
    def realm(self) -> str:
        assert self._httpd is not None
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/token"

    def start(self) -> None:
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
                user = server._basic_user(self.headers.get("Authorization", ""))
                self._answer(server._issue(user, query, oauth=False))

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = urllib.parse.parse_qs(self.rfile.read(length).decode())
                grant = form.get("grant_type", [""])[0]
                user: str | None = None
                if grant == "refresh_token" and form.get("refresh_token", [""])[0] == server.refresh_token:
                    user = server.username
                elif grant == "password" and form.get("username") == [server.username]:
                    user = server.username if form.get("password") == [server.password] else None
                self._answer(server._issue(user, form, oauth=True))

            def _answer(self, result: tuple[int, dict[str, Any]]) -> None:
                body = json.dumps(result[1]).encode()
                self.send_response(result[0])
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True).start()

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()

    def _basic_user(self, header: str) -> str | None:
        if not header.startswith("Basic "):
            return None  # anonymous
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        return user if (user, password) == (self.username, self.password) else ""

    def _issue(
        self, user: str | None, query: dict[str, list[str]], *, oauth: bool
    ) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.requests += 1
        if user == "" or (oauth and user is None):
            return 401, {"errors": [{"code": "UNAUTHORIZED", "message": "bad credentials"}]}
        access = []
        for scope in (s for value in query.get("scope", []) for s in value.split(" ") if s):
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            # Anonymous callers get a token without rights, as real token services do.
            allowed = actions.split(",") if user else []
            access.append({"type": kind, "name": name, "actions": allowed})
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "sub": user or "",
            "aud": SERVICE,
            "exp": now + self.expires_in,
            "nbf": now - 10,
            "iat": now,
            "jti": secrets.token_hex(8),
            "access": access,
        }
        token = jwt.encode(claims, self._key, algorithm="ES256", headers={"x5c": [self._x5c]})
        key = "access_token" if oauth else "token"
        return 200, {key: token, "expires_in": self.expires_in}


# --- registries -------------------------------------------------------------------------------------


@dataclass
class RegistryServer:
    """One registry for tests: ``url``/``host`` to reach it, credentials if it wants any, ``push``."""

    url: str
    host: str
    username: str | None = None
    password: str | None = None
    token_server: TokenServer | None = None
    proc: subprocess.Popen[bytes] | None = None
    docker_config_dir: Path | None = None
    _pushed: set[str] = field(default_factory=set)

    def push(self, repository: str, tag: str = "1") -> str:
        """Push world's busybox image as ``host/repository:tag``; returns that name. Idempotent."""
        name = f"{self.host}/{repository}:{tag}"
        if name in self._pushed:
            return name
        world.ensure_busybox_image()
        env = {**os.environ, "DOCKER_HOST": world.DOCKER_HOST}
        if self.docker_config_dir is not None:
            env["DOCKER_CONFIG"] = str(self.docker_config_dir)
        for argv in (["tag", world.BUSYBOX_IMAGE, name], ["push", "-q", name]):
            proc = subprocess.run([world.DOCKER_CLI, *argv], env=env, capture_output=True, timeout=120)
            if proc.returncode != 0:
                raise RuntimeError(f"docker {' '.join(argv)} failed: {proc.stderr.decode(errors='replace')}")
        self._pushed.add(name)
        return name

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.token_server is not None:
            self.token_server.stop()


def start_registry(
    root: Path,
    *,
    auth: str = "none",
    username: str = "binder",
    password: str | None = None,
    readonly: bool = False,
) -> RegistryServer:
    """Start ``docker-registry`` on a free loopback port, storing under ``root``; auth: none|basic|token.

    `readonly`: distribution's maintenance mode, which refuses every upload (a registry that fails pushes)."""
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    host = f"127.0.0.1:{port}"
    password = password or secrets.token_urlsafe(12)
    server = RegistryServer(url=f"http://{host}", host=host)
    auth_yaml = ""
    if auth == "basic":
        hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
        (root / "htpasswd").write_text(f"{username}:{hashed}\n")
        auth_yaml = f"auth:\n  htpasswd:\n    realm: binder-test\n    path: {root / 'htpasswd'}\n"
    elif auth == "token":
        tokens = TokenServer(username, password, secrets.token_urlsafe(16), root / "token-cert.pem")
        tokens.start()
        server.token_server = tokens
        auth_yaml = (
            f"auth:\n  token:\n    realm: {tokens.realm}\n    service: {SERVICE}\n"
            f"    issuer: {ISSUER}\n    rootcertbundle: {tokens.cert_path}\n"
        )
    elif auth != "none":
        raise ValueError(f"unknown auth {auth!r}")
    if auth != "none":
        server.username, server.password = username, password
        server.docker_config_dir = root / "docker-config"
        server.docker_config_dir.mkdir(exist_ok=True)
        b64 = base64.b64encode(f"{username}:{password}".encode()).decode()
        (server.docker_config_dir / "config.json").write_text(json.dumps({"auths": {host: {"auth": b64}}}))
    cfg = root / "registry.yml"
    cfg.write_text(
        "version: 0.1\nlog:\n  level: error\n"
        f"storage:\n  filesystem:\n    rootdirectory: {root / 'data'}\n"
        + ("  maintenance:\n    readonly:\n      enabled: true\n" if readonly else "")
        + f"http:\n  addr: {host}\n  secret: {secrets.token_hex(16)}\n"
        + auth_yaml
    )
    log = root / "registry.log"
    with open(log, "ab") as out:
        server.proc = subprocess.Popen(
            ["docker-registry", "serve", str(cfg)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    deadline = time.monotonic() + 30
    while not _answers(server.url):
        if server.proc.poll() is not None or time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(
                f"docker-registry did not start; log:\n{log.read_text(errors='replace')[-2000:]}"
            )
        time.sleep(0.05)
    return server


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/v2/", timeout=1):
            return True
    except urllib.error.HTTPError as e:
        return e.code == 401
    except OSError:
        return False


class ScriptedServer:
    """A loopback HTTP server answering every request with one fixed response (for odd registries)."""

    def __init__(self, status: int, headers: dict[str, str] | None = None, body: bytes = b"") -> None:
        answer = (status, headers or {}, body)

        class Handler(http.server.BaseHTTPRequestHandler):
            def _reply(self) -> None:
                status, headers, body = answer
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_HEAD = do_POST = _reply

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

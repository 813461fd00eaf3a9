"""The one typed settings object, built once at start-up and passed down explicitly.

Sources, strongest first: CLI flags (``overrides``), ``LIMEN_*`` environment variables, an optional TOML
file (``--config``, or ``LIMEN_CONFIG``) whose keys are the field names below, then the defaults.
Nothing reads the environment after :func:`load_settings` returns.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import os
import re
import ssl
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Annotated, Any, ClassVar, Literal, get_args
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from limen.url_redaction import holds_password, redacted_url

ENV_PREFIX = "LIMEN_"

VirtType = Literal["auto", "kvm", "qemu"]
_HOST_NAME = re.compile(r"^[a-z0-9_]([a-z0-9_-]{0,62})(\.[a-z0-9_]([a-z0-9_-]{0,62}))*\.?$")



def refused(kind: str, english: str, **values: object) -> PydanticCustomError:
    """A setting refused by one of limen's own rules: ``kind`` names the rule for the command line's words
    (``cli.settings.problem.<kind>`` in the catalogues), ``english`` says it with ``values`` ({name}), as
    ``str(SettingsError)`` and the English catalogue do."""
    return PydanticCustomError(kind, english, values)


def _bad_port(kind: str) -> PydanticCustomError:
    return refused(kind, "the port is not a number from 1 to 65535")


def _port_in_range(port: int | None) -> bool:
    """A URL's port, None when it names none, is one a client can dial (0 would silently be the default's)."""
    return port is None or 1 <= port <= 65535


# OpenSSL's reasons for a key that is not the certificate's: another key of its type (KEY_VALUES_MISMATCH), or
# of another type (an RSA key with an EC certificate: NO_CERTIFICATE_ASSIGNED, no certificate for an RSA key),
# which was said as "not a PEM certificate and its key (NO_CERTIFICATE_ASSIGNED)".
_KEY_NOT_OF_CERTIFICATE = ("KEY_VALUES_MISMATCH", "KEY_TYPE_MISMATCH", "PRIVATE_KEY_MISMATCH",
                           "NO_CERTIFICATE_ASSIGNED")


def tls_pair_problem(cert: Path, key: Path) -> PydanticCustomError | None:
    """Why ``cert`` and ``key`` cannot serve TLS together (see :func:`refused`), or None. Checked with the
    settings, so that ``limen serve`` says it before it says it serves (else a traceback from uvicorn's start)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        with key.open("rb") as head:
            encrypted = b"ENCRYPTED" in head.read(4096)  # PKCS#8's header, or the older Proc-Type line
        # An encrypted key would make OpenSSL ask for its passphrase on a terminal: the empty one fails instead.
        context.load_cert_chain(cert, key, password=lambda: b"")
    except ssl.SSLError as exc:
        reason = str(exc.reason or exc)
        if encrypted:
            return refused("limen_key_encrypted", "{key} is encrypted: limen needs the key without a passphrase "
                           "(openssl pkey -in {key_path} -out PLAIN_KEY)", key=repr(str(key)), key_path=str(key))
        if any(mismatch in reason for mismatch in _KEY_NOT_OF_CERTIFICATE):
            return refused("limen_key_mismatch", "{key} is not the key of the certificate {cert}",
                           key=repr(str(key)), cert=repr(str(cert)))
        return refused("limen_not_pem", "{cert} and {key} are not a PEM certificate and its key ({why})",
                       cert=repr(str(cert)), key=repr(str(key)), why=reason)
    except OSError as exc:
        return refused("limen_tls_unreadable", "cannot read {cert} or {key}: {why}", cert=repr(str(cert)),
                       key=repr(str(key)), why=str(exc.strerror or exc))
    return None

class Settings(BaseSettings):
    # An empty variable (LIMEN_DATA_DIR= in an environment file) is unset, not "": an empty path read as ".",
    # and `limen serve` made the directory it was started in its data directory, 0700.
    # nan and inf are no numbers a person means: "nan" passed as a float and was called "above the most allowed".
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True, env_ignore_empty=True,
                                      allow_inf_nan=False)
    # False for `limen config check FILE`: the file alone is judged, whatever the environment says.
    read_environment: ClassVar[bool] = True

    # -- where things are ----------------------------------------------------------------------------
    libvirt_uri: str = "qemu:///system"
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    data_dir: Path = Path("/var/lib/limen")
    log_dir: Path = Path("/var/log/limen")
    iso_dir: Path = Path("/var/lib/limen/isos")
    max_iso_bytes: int = Field(16 * 2**30, ge=1, description="Largest ISO an upload may bring")
    # An upload that sends nothing for this long is dropped (its temp file deleted).
    iso_upload_idle_timeout: float = Field(60.0, gt=0, le=3600)
    storage_pool: str = Field("limen", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
    # Where the storage pool keeps its volumes; defaults to <data_dir>/pool.
    storage_pool_dir: Path | None = None
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_max_bytes: int = Field(10 * 2**20, ge=4096, description="Size at which limen.log is rotated")
    log_backups: int = Field(5, ge=0, le=100, description="Rotated log files kept")
    # noVNC's package (core/, vendor/); None: the copy bundled in limen's package (limen.web.npm_assets).
    novnc_dir: Path | None = None
    # Swagger UI's package (swagger-ui-bundle.js, swagger-ui.css) for /api/docs; None: the bundled copy.
    swagger_ui_dir: Path | None = None
    # uPlot's dist/ (the charts of the VM details page); None: the bundled copy.
    uplot_dir: Path | None = None
    # With a token, /metrics wants "Authorization: Bearer <token>"; without one it answers loopback only.
    metrics_token: SecretStr | None = None

    # -- requests ------------------------------------------------------------------------------------
    # POST /api/isos streams to disk under its own limit (limen.request_reading.UNLIMITED_BODY_ROUTES).
    max_body_bytes: int = Field(2**20, ge=1024, le=2**31, description="Largest request body accepted, bytes")
    request_read_timeout: float = Field(
        10.0, gt=0, le=300, description="Seconds a request's line and headers may take, or its body may stall"
    )

    # -- new VMs -------------------------------------------------------------------------------------
    vnc_listen: str = "127.0.0.1"
    # auto: KVM when the VM's host's libvirt offers it (its capabilities), else TCG (libvirt type 'qemu').
    virt_type: VirtType = "auto"

    # -- libvirt -------------------------------------------------------------------------------------
    libvirt_timeout: float = Field(5.0, gt=0, le=120, description="Bound on every libvirt call, seconds")

    # -- console -------------------------------------------------------------------------------------
    console_auto_start: bool = True
    console_write_timeout: float = Field(5.0, gt=0, le=60, description="Deadline on every WebSocket write")
    console_check_vm_timeout: float = Field(3.0, gt=0, le=60)
    console_start_vm_timeout: float = Field(8.0, gt=0, le=120)
    console_get_port_timeout: float = Field(3.0, gt=0, le=60)
    console_connect_timeout: float = Field(3.0, gt=0, le=60)
    console_banner_timeout: float = Field(3.0, gt=0, le=60)
    console_serial_open_timeout: float = Field(3.0, gt=0, le=60, description="Seconds to open a serial console")
    console_ping_interval: float = Field(20.0, ge=0, le=3600, description="0 turns pings off")
    console_idle_timeout: float = Field(0.0, ge=0, description="0 turns the idle timeout off")
    console_idle_warning: float = Field(60.0, ge=0, description="Seconds before the idle close to warn")

    # -- event stream (GET /api/events) ----------------------------------------------------------------
    events_keepalive: float = Field(
        15.0, gt=0, le=3600, description="Seconds between keep-alive comments; access is re-checked as often"
    )

    # -- resource figures (GET /api/vms/{id}/stats, /api/host/stats, /metrics) -------------------------
    stats_interval: float = Field(
        5.0, ge=0, le=3600, description="Seconds between samples of every running VM's CPU, memory, disk and "
        "network; 0 turns sampling off"
    )

    # -- access --------------------------------------------------------------------------------------
    # SQLAlchemy URL of limen's database (users, tokens, sessions, audit); defaults to
    # sqlite:///<data_dir>/limen.db. It may hold a password: never log it (see database_url_redacted).
    database_url: str | None = None
    # Bound on each database call a request makes on a network database (PostgreSQL), well under a proxy's
    # wait for an answer (deploy/haproxy.cfg: 30 s); past it the request answers DATABASE_UNAVAILABLE.
    database_timeout: float = Field(10.0, gt=0, le=120, description="Bound on every database call, seconds")
    # None keeps console tickets in this process; a redis:// URL shares them between limen instances.
    redis_url: str | None = None
    console_ticket_ttl: float = Field(30.0, gt=0, le=3600, description="Seconds a console ticket is valid")
    session_ttl: float = Field(12 * 3600.0, gt=0, le=90 * 86400, description="Seconds a browser sign-in lasts")
    # The address users open, e.g. https://limen.example:8443 (a reverse proxy's, if one is in front):
    # the server's own origin and a host name it answers to. None: both come from host and port.
    public_url: str | None = None
    # More host names (or addresses) limen answers to, on loopback too (limen.auth.site); "*" for any.
    # Comma-separated in the environment.
    allowed_hosts: Annotated[tuple[str, ...], NoDecode] = ()
    # Origins (scheme://host[:port]) allowed to open the console and to send cookie-authenticated
    # requests; empty means only the server's own origin. Comma-separated in the environment.
    allowed_origins: Annotated[tuple[str, ...], NoDecode] = ()
    # Proxies (CIDRs) whose X-Forwarded-For / X-Forwarded-Proto are believed. Comma-separated.
    trusted_proxies: Annotated[tuple[str, ...], NoDecode] = ()
    # Sign-in throttle (limen.auth.ratelimit): failures of one user name at one address, and of one address
    # (an IPv6 address's /64), before sign-in is blocked there; each failure past the limit doubles the block.
    login_max_failures_per_user: int = Field(5, ge=1, le=1000, description="Per user name at one address")
    login_max_failures_per_address: int = Field(20, ge=1, le=100000, description="Per address, all names")
    login_block_seconds: float = Field(60.0, gt=0, le=86400, description="First block, at the limit")
    login_block_max_seconds: float = Field(3600.0, gt=0, le=7 * 86400, description="Longest block")
    login_failure_window: float = Field(
        300.0, gt=0, le=86400, description="Seconds after the last failure or block that failures are forgotten"
    )
    # An attempt's place is given back if it is not decided in this time (its process died mid-attempt).
    login_attempt_timeout: float = Field(60.0, ge=1, le=3600, description="Seconds an undecided attempt holds")
    # Seconds between this instance's heartbeats (and sweeps for lost ones); an instance whose heartbeat is
    # older than three of them is gone. Every instance on one database should use the same value.
    instance_heartbeat: float = Field(5.0, gt=0, le=3600, description="Seconds between instance heartbeats")
    # Self-registration (POST /api/register): off; approval (new accounts wait for an administrator); open.
    registration: Literal["off", "approval", "open"] = "off"
    # Per-user quotas of plain users (an administrator's per-user override wins; admins have none unless
    # set for them). None: unlimited. vCPUs and memory bound what the user's running VMs use.
    quota_vms: int | None = Field(None, ge=0, description="VMs a user may own")
    quota_vcpus: int | None = Field(None, ge=0, description="vCPUs a user's running VMs may use")
    quota_memory_mib: int | None = Field(None, ge=0, description="MiB a user's running VMs may use")
    quota_disk_gib: int | None = Field(None, ge=0, description="GiB of disks a user's VMs may have")
    # The same over every VM in libvirt, whoever owns it (admins included).
    quota_total_vms: int | None = Field(None, ge=0)
    quota_total_vcpus: int | None = Field(None, ge=0)
    quota_total_memory_mib: int | None = Field(None, ge=0)
    quota_total_disk_gib: int | None = Field(None, ge=0)
    # argon2id's cost of each password hash; the defaults are argon2-cffi's (RFC 9106's low-memory profile,
    # ~0.1 s of CPU). A hash keeps the parameters it was made with, so changing them locks nobody out: a
    # password is rehashed with the new ones at its next sign-in. Tests lower them to the minimum.
    password_hash_time_cost: int = Field(3, ge=1, le=100, description="argon2id passes over its memory")
    password_hash_memory_kib: int = Field(65536, ge=8, le=4 * 2**20, description="argon2id memory per hash, KiB")
    password_hash_parallelism: int = Field(4, ge=1, le=64, description="argon2id lanes")
    # auto: the session cookie is Secure when the request came over HTTPS (directly or via a trusted proxy).
    cookie_secure: Literal["auto", "always", "never"] = "auto"

    # -- TLS -----------------------------------------------------------------------------------------
    # PEM certificate (chain) and private key: with both, limen serves HTTPS and WSS itself on its port
    # (plain HTTP there is refused) and sends HSTS. Neither: plain HTTP (loopback, or behind a proxy).
    tls_cert: Path | None = None
    tls_key: Path | None = Field(None, validate_default=True)

    @field_validator("host", "vnc_listen", "libvirt_uri")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise refused("limen_empty", "must not be empty")
        return value

    @field_validator("libvirt_uri")
    @classmethod
    def _libvirt_uri_without_password(cls, value: str) -> str:
        # libvirt takes no password from the URI (SSH keys, SASL or TLS do that): one there would only be
        # repeated in messages, logs and `limen doctor`.
        if holds_password(value):
            raise refused("limen_uri_password", "must not hold a password: libvirt takes none from the URI "
                                                "(use SSH keys, SASL or TLS)")
        return value

    @field_validator("tls_cert")
    @classmethod
    def _tls_cert(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise refused("limen_certificate_unreadable", "{path} is not a readable certificate file",
                          path=repr(str(value)))
        return value

    @field_validator("tls_key")
    @classmethod
    def _tls_key(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is not None and not value.is_file():
            raise refused("limen_key_unreadable", "{path} is not a readable key file", path=repr(str(value)))
        has_cert = info.data.get("tls_cert") is not None
        if (value is None) == has_cert and "tls_cert" in info.data:
            raise refused("limen_tls_pair_half", "tls_cert and tls_key go together: give both or neither")
        if value is not None and has_cert:
            problem = tls_pair_problem(info.data["tls_cert"], value)
            if problem:
                raise problem
        return value

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str | None) -> str | None:
        if value is None:
            return value
        bad_port = _bad_port("limen_database_port")
        try:
            url = make_url(value)
        except ArgumentError:
            raise refused("limen_not_database_url",
                          "is not a database URL: sqlite:///PATH or postgresql://USER@HOST/DATABASE") from None
        except ValueError:  # SQLAlchemy's int() of the port: its English words are no setting's reason
            raise bad_port from None
        if not _port_in_range(url.port):
            raise bad_port
        backend = url.get_backend_name()
        if backend not in ("sqlite", "postgresql"):
            raise refused("limen_database_backend", "limen keeps its data in SQLite or PostgreSQL, not {backend}: "
                          "sqlite:///PATH or postgresql://USER@HOST/DATABASE", backend=backend)
        if backend == "sqlite" and _in_memory(url.database, url.query):
            # Each process had a database of its own that ended with it: `user ensure-admin` made an admin
            # nobody else saw, and `serve` served an empty one.
            raise refused("limen_database_in_memory", "is a database in memory, which no other limen process "
                          "sees and which ends with its process: sqlite:///PATH, or leave it out for "
                          "<data dir>/limen.db")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        # What redis-py takes, checked here: `limen serve` ended in its traceback ("Redis URL must specify one
        # of the following schemes", "Port out of range 0-65535") and `limen config check` said the file was
        # fine. Its schemes in its case; a port it would not take for 6379 silently (0); a socket's path.
        if value is None:
            return value
        not_redis = refused("limen_not_redis_url",
                            "is not a Redis URL: redis://HOST[:PORT][/DB], rediss://HOST[:PORT][/DB] or unix:///PATH")
        bad_port = _bad_port("limen_redis_port")
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise not_redis
        try:
            parts = urlsplit(value)
        except ValueError:  # an IPv6 address's [ never closed
            raise not_redis from None
        try:
            port = parts.port
        except ValueError:  # urllib's English words ("Port out of range 0-65535") are no setting's reason
            raise bad_port from None
        if not _port_in_range(port):
            raise bad_port
        if parts.scheme == "unix" and (parts.hostname or not parts.path):  # unix://tmp/s was the socket /s
            raise not_redis
        return value

    @property
    def tls(self) -> bool:
        """limen itself terminates TLS (tls_cert and tls_key are set)."""
        return self.tls_cert is not None and self.tls_key is not None

    # tls_key = "" was read as ".": "'.' is not a readable key file". A NUL character (TOML's "\u0000") passed
    # `config check`, then `serve` ended in a traceback (ValueError: embedded null byte): no system call takes it.
    @field_validator("data_dir", "log_dir", "iso_dir", "storage_pool_dir", "novnc_dir", "swagger_ui_dir",
                     "uplot_dir", "tls_cert", "tls_key", mode="before")
    @classmethod
    def _path_not_empty(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            raise refused("limen_empty_path", "must be a path, not empty (leave it out for the default)")
        if isinstance(value, str | PurePath) and "\0" in str(value):
            raise refused("limen_path_nul", "must be a path without a NUL character")
        return value

    @field_validator("stats_interval")
    @classmethod
    def _stats_interval(cls, value: float) -> float:
        if 0 < value < 0.5:
            raise refused("limen_stats_interval", "must be 0 (off) or at least 0.5 seconds")
        return value

    @field_validator("allowed_origins", "trusted_proxies", "allowed_hosts", mode="before")
    @classmethod
    def _split_commas(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        origins = []
        for origin in value:
            parts = urlsplit(origin.strip().rstrip("/"))
            if parts.scheme not in ("http", "https") or not parts.netloc or parts.path or parts.query:
                raise refused("limen_not_origin", "{origin} is not an origin like https://limen.example.org[:port]",
                              origin=repr(origin))
            origins.append(f"{parts.scheme}://{parts.netloc.lower()}")
        return tuple(origins)

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        """Kept as its origin: scheme://host[:port] in lower case, default ports dropped."""
        if value is None:
            return None
        # Said with its password hidden, as every URL limen shows (an address with credentials is refused).
        not_an_address = refused("limen_not_public_url", "{url} is not an address like https://limen.example[:port]",
                                 url=repr(redacted_url(value)))
        try:
            parts = urlsplit(value.strip())
            port = parts.port
        except ValueError:
            raise not_an_address from None
        if (parts.scheme.lower() not in ("http", "https") or not parts.hostname or parts.path not in ("", "/")
                or parts.query or parts.fragment or parts.username or parts.password):
            raise not_an_address
        scheme, host = parts.scheme.lower(), parts.hostname.lower()
        host = f"[{host}]" if ":" in host else host
        if port is None or port == {"http": 80, "https": 443}[scheme]:
            return f"{scheme}://{host}"
        return f"{scheme}://{host}:{port}"

    @field_validator("allowed_hosts")
    @classmethod
    def _hosts(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        hosts = []
        for host in value:
            name = host.strip().lower()
            bare = name[1:-1] if name.startswith("[") and name.endswith("]") else name
            if name != "*" and not _HOST_NAME.fullmatch(bare):
                try:
                    ipaddress.ip_address(bare)
                except ValueError:
                    raise refused("limen_not_host", "{host} is not a host name or address (no scheme, no port)",
                                  host=repr(host)) from None
            hosts.append(name)
        return tuple(hosts)

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        networks = []
        for network in value:
            try:
                networks.append(str(ipaddress.ip_network(network, strict=False)))
            except ValueError:
                raise refused("limen_not_network", "{network} is not an address or a CIDR like 10.0.0.0/8",
                              network=repr(network)) from None
        return tuple(networks)

    @model_validator(mode="after")
    def _password_hash_memory(self) -> Settings:
        if self.password_hash_memory_kib < 8 * self.password_hash_parallelism:
            raise refused("limen_hash_memory",
                          "password_hash_memory_kib must be at least 8 KiB per lane (password_hash_parallelism)")
        return self

    @model_validator(mode="after")
    def _public_url_of_tls(self) -> Settings:
        # limen serving HTTPS itself answers no http:// address: with one as public_url, `config check` passed,
        # `serve` started, and every browser's sign-in was refused (ORIGIN_NOT_ALLOWED: its https:// origin is
        # not the http:// one named).
        if self.tls and self.public_url is not None and self.public_url.startswith("http://"):
            raise refused("limen_public_url_not_https", "public_url {url} is an http:// address, but limen serves "
                          "HTTPS itself (tls_cert and tls_key): give its https:// address, or browsers' sign-ins "
                          "are refused", url=repr(self.public_url))
        return self

    @model_validator(mode="after")
    def _derive_pool_dir(self) -> Settings:
        if self.storage_pool_dir is None:
            object.__setattr__(self, "storage_pool_dir", self.data_dir / "pool")
        if self.database_url is None:
            object.__setattr__(self, "database_url", data_dir_database_url(self.data_dir))
        return self

    @property
    def address(self) -> str:
        """host:port as a URL writes it (an IPv6 host in brackets: "http://::1:8080/" is no URL)."""
        return f"{host_in_url(self.host)}:{self.port}"

    @property
    def db_url(self) -> str:
        assert self.database_url is not None  # set by _derive_pool_dir
        return self.database_url

    @property
    def pool_dir(self) -> Path:
        assert self.storage_pool_dir is not None  # set by _derive_pool_dir
        return self.storage_pool_dir

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings]
        if getattr(settings_cls, "read_environment", True):
            # What limen passes pydantic-settings leaves every option of the environment source to model_config.
            sources.append(_RememberedEnvironment(settings_cls))
        if settings_cls.model_config.get("toml_file"):
            sources.append(TomlConfigSettingsSource(settings_cls))
        return tuple(sources)


class _RememberedEnvironment(EnvSettingsSource):
    """pydantic-settings' environment source, its answer remembered for the ``LIMEN_*`` variables it was read
    from. Working the answer out (each field's variable names, whether its value is JSON) is ~3/4 of a build's
    ~2 ms of CPU, and it depends on nothing but the settings class and those variables (no field has an alias
    outside the prefix): a build with the same ones, as the tests make hundreds of, reuses it. The variables
    themselves are read at every build."""

    _answers: ClassVar[dict[tuple[type[BaseSettings], frozenset[tuple[str, str | None]]], dict[str, Any]]] = {}
    _REMEMBERED: ClassVar[int] = 32  # classes × environments; a class per --config file

    def __call__(self) -> dict[str, Any]:
        prefix = ENV_PREFIX.lower()
        variables = frozenset((name, value) for name, value in self.env_vars.items()
                              if name.lower().startswith(prefix))
        key = (self.settings_cls, variables)
        answer = self._answers.get(key)
        if answer is None:
            answer = super().__call__()
            if len(self._answers) >= self._REMEMBERED:
                self._answers.clear()
            self._answers[key] = answer
        return dict(answer)  # pydantic-settings merges it into new dicts; the copy keeps ours as it was


@dataclass(frozen=True, slots=True)
class SettingProblem:
    """One bad setting, as pydantic refused it: ``where`` the user set it (``LIMEN_PORT (port)``, or
    ``FILE: port`` for a key of the settings file), pydantic's error ``kind`` and English ``message``, the
    ``value`` given (None: none), the values its message names (``context``: ``ge``, ``expected``…) and,
    for a file's key written with LIMEN_, the setting it meant (``unprefixed``). A rule between settings
    (``password_hash_memory_kib`` against ``password_hash_parallelism``) is no one setting's: it is
    ``across_settings``, and ``where`` is :data:`ACROSS_SETTINGS`."""

    where: str
    kind: str
    message: str
    value: object = None
    context: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    unprefixed: str | None = None
    across_settings: bool = False

    def __str__(self) -> str:
        hint = f" (the file names settings without LIMEN_: {self.unprefixed} = …)" if self.unprefixed else ""
        return f"{self.where}: {self.message}{hint}"


@dataclass(frozen=True, slots=True)
class FileProblem:
    """Why the settings file cannot be read: ``missing``, a ``directory``, ``not_toml`` (where the parser
    stopped: ``line`` and ``column``, or both None at the end of the file) or otherwise ``unreadable``;
    ``reason`` says it in English (the parser's or the system's words)."""

    kind: Literal["missing", "directory", "not_ordinary", "not_toml", "unreadable"]
    reason: str
    line: int | None = None
    column: int | None = None


# How tomllib ends its messages: "Invalid value (at line 1, column 8)", "... (at end of document)".
_TOML_POSITION = re.compile(r"\(at line (\d+), column (\d+)\)$")


def _file_problem(exc: OSError | ValueError) -> FileProblem:
    if isinstance(exc, OSError):
        return FileProblem("unreadable", str(exc.strerror or exc))
    where = _TOML_POSITION.search(str(exc))
    return FileProblem("not_toml", str(exc), *(map(int, where.groups()) if where else (None, None)))


class SettingsError(Exception):
    """Invalid configuration; ``str()`` names each offending key the way the user set it, in English. The
    command line says it in its language from ``problems`` (each bad key) or ``file``/``file_problem`` (a
    settings file that cannot be read)."""

    def __init__(self, text: str, *, problems: Sequence[SettingProblem] = (), file: Path | None = None,
                 file_problem: FileProblem | None = None) -> None:
        super().__init__(text)
        self.problems = tuple(problems)
        self.file = file
        self.file_problem = file_problem


# A key that is no setting of limen's is taken for a secret when its name says so (LIMEN_DB_PASSWORD=…); and the
# settings repeated with a URL's password hidden.
_SECRET_NAME = re.compile(r"token|secret|password", re.IGNORECASE)
_URL_SETTING = re.compile(r"_url$", re.IGNORECASE)


def is_secret_setting(name: str) -> bool:
    """Whether setting ``name``'s value is never shown (``config show``) nor repeated (errors): a setting typed
    as a secret; an unknown key named like one. Not by name for limen's own (password_hash_time_cost is a
    number anyone may see)."""
    field = Settings.model_fields.get(name.lower())
    if field is None:
        return bool(_SECRET_NAME.search(name))
    return SecretStr in (field.annotation, *get_args(field.annotation))


# Where a problem of no one setting is said to be (in English; the command line says it in its language).
ACROSS_SETTINGS = "settings"


def _problem(error: Mapping[str, Any], where: str, *, unprefixed: str | None = None) -> SettingProblem:
    given = error.get("input")
    setting = str(error["loc"][0]).lower().removeprefix("limen_") if error.get("loc") else ""
    if error.get("type") == "missing" or isinstance(given, dict) or is_secret_setting(setting):
        given = None
    elif isinstance(given, str) and _URL_SETTING.search(setting):
        given = redacted_url(given)
    context = {name: _as_written(bound) for name, bound in (error.get("ctx") or {}).items()}
    if error.get("type") == "literal_error" and setting in Settings.model_fields:
        # The choices as a list, not pydantic's English "'a', 'b' or 'c'".
        context["expected"] = ", ".join(map(repr, get_args(Settings.model_fields[setting].annotation)))
    across = not error.get("loc")  # a model validator's: it names no setting
    return SettingProblem(where=ACROSS_SETTINGS if across else where, kind=str(error.get("type", "")),
                          message=str(error.get("msg", "")), value=given, context=context, unprefixed=unprefixed,
                          across_settings=across)


def _as_written(bound: object) -> object:
    """A bound as a person writes it: pydantic gives a float setting's bounds as floats ("at most 3600.0")."""
    return int(bound) if isinstance(bound, float) and bound.is_integer() else bound


def _describe(error: dict[str, Any]) -> SettingProblem:
    field = ".".join(str(part) for part in error["loc"])
    env_name = f"{ENV_PREFIX}{field.upper()}"
    return _problem(error, f"{env_name} ({field})")


SettingSource = Literal["flag", "env", "file", "default"]


def settings_file_in_use(config_file: Path | None) -> Path | None:
    """The settings file limen reads: ``config_file`` (``--config``), else ``$LIMEN_CONFIG``, else none."""
    if config_file is None and os.environ.get(f"{ENV_PREFIX}CONFIG"):
        return Path(os.environ[f"{ENV_PREFIX}CONFIG"])
    return config_file


def _settings_class(config_file: Path | None, *, environment: bool) -> type[Settings]:
    if config_file is None and environment:
        return Settings
    if config_file is not None and not config_file.is_file():  # one stat for the file that is there
        if config_file.is_dir():
            raise SettingsError(f"--config ({config_file}): is a directory, not a settings file", file=config_file,
                                file_problem=FileProblem("directory", "is a directory"))
        if config_file.exists():
            # A device or a named pipe: /dev/zero was said to be missing, and reading one would not end.
            raise SettingsError(f"--config ({config_file}): is not an ordinary file", file=config_file,
                                file_problem=FileProblem("not_ordinary", "is not an ordinary file"))
        raise SettingsError(f"--config ({config_file}): no such file", file=config_file,
                            file_problem=FileProblem("missing", "no such file"))
    return _chosen_settings_class(config_file, environment)


# A class holds only the file's path (read at every build), so one per path serves every build of it: making
# the class is ~3 ms of pydantic's CPU, ~2/3 of a build from a file, and the environment source's remembered
# answers (_RememberedEnvironment) are per class. A server builds once; the CLI's and the tests' many do not.
@functools.lru_cache(maxsize=_RememberedEnvironment._REMEMBERED)
def _chosen_settings_class(config_file: Path | None, environment: bool) -> type[Settings]:
    class ChosenSettings(Settings):
        model_config = SettingsConfigDict(toml_file=config_file)
        read_environment = environment

    return ChosenSettings


def _in_memory(database: str | None, query: Mapping[str, str | Sequence[str]]) -> bool:
    """Whether a SQLite URL's database lives in memory: none named (``sqlite://``), ``:memory:``, or a URI
    filename (``uri=true``) of ``file::memory:`` or ``mode=memory``."""
    if not database or database == ":memory:":
        return True
    if query.get("uri") != "true":
        return False
    mode = query.get("mode") or ()
    return database.startswith("file::memory:") or "memory" in ((mode,) if isinstance(mode, str) else mode)


def data_dir_database_url(data_dir: Path) -> str:
    """The SQLite database limen keeps under ``data_dir`` when LIMEN_DATABASE_URL names none."""
    return f"sqlite:///{data_dir / 'limen.db'}"


def host_in_url(host: str) -> str:
    """``host`` as a URL's authority writes it: an IPv6 address in brackets."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Builds the settings once. ``overrides`` are CLI flags; ``None`` values mean 'not given'.

    ``config_file`` defaults to ``$LIMEN_CONFIG`` when that is set.
    """
    given = {key: value for key, value in overrides.items() if value is not None}
    config_file = settings_file_in_use(config_file)
    settings_cls = _settings_class(config_file, environment=True)
    in_file = _file_keys(config_file)
    if not in_file:
        return _build(settings_cls, config_file, given, _describe)
    sources = setting_sources(config_file, **overrides)

    def describe(error: dict[str, Any]) -> SettingProblem:
        # A key the file set (or one it has that limen does not know) is named as the file writes it: its
        # LIMEN_ variable would send the reader looking for something they never set.
        # The file's keys are matched without regard to case, as pydantic-settings reads them ("LIMEN_PORT"
        # in the file was reported as the variable LIMEN_LIMEN_PORT, which nobody set).
        key = str(error["loc"][0]).lower() if error["loc"] else ""
        if key in in_file and sources.get(key, "file") == "file":
            return _describe_file_key(error, prefix=f"{config_file}: ")
        return _describe(error)

    return _build(settings_cls, config_file, given, describe)


def _file_keys(config_file: Path | None) -> set[str]:
    """The keys ``config_file`` sets (none when there is none, or it cannot be read: that is said elsewhere)."""
    if config_file is None or not config_file.is_file():
        return set()
    try:
        return {str(key).lower() for key in TomlConfigSettingsSource(Settings, toml_file=config_file).toml_data}
    except (OSError, ValueError):
        return set()


def check_settings_file(config_file: Path) -> Settings:
    """The settings of ``config_file`` alone (the ``LIMEN_*`` variables are not read: they would hide a bad
    value in it, or fail it for their own); :class:`SettingsError` names its bad keys as the file writes them."""
    return _build(_settings_class(config_file, environment=False), config_file, {}, _describe_file_key)


def _build(settings_cls: type[Settings], config_file: Path | None, given: dict[str, Any],
           describe: Callable[[dict[str, Any]], SettingProblem]) -> Settings:
    try:
        return settings_cls(**given)
    except ValidationError as exc:
        problems = [describe(dict(error)) for error in exc.errors()]
        raise SettingsError("invalid configuration:\n  " + "\n  ".join(map(str, problems)),
                            problems=problems) from None
    except (OSError, ValueError) as exc:  # unreadable or malformed TOML
        raise SettingsError(f"invalid configuration file {config_file}: {exc}", file=config_file,
                            file_problem=_file_problem(exc)) from None


def _describe_file_key(error: dict[str, Any], *, prefix: str = "") -> SettingProblem:
    field = ".".join(str(part) for part in error["loc"])
    setting = field.lower().removeprefix("limen_")
    meant = error.get("type") == "extra_forbidden" and setting != field.lower() and setting in Settings.model_fields
    return _problem(error, f"{prefix}{field}", unprefixed=setting if meant else None)


def setting_sources(config_file: Path | None = None, **overrides: Any) -> dict[str, SettingSource]:
    """Where each setting :func:`load_settings` (same arguments) takes comes from, strongest source first:
    a CLI flag, a ``LIMEN_*`` variable, the TOML file, else its default (or a value derived from others)."""
    config_file = settings_file_in_use(config_file)
    in_file = _file_keys(config_file)
    # pydantic-settings matches variable names without regard to case, so this does too; and an empty variable
    # (LIMEN_PORT= in an environment file) it takes for unset (env_ignore_empty): `config show` said such a
    # setting came from the environment while its value was the file's.
    ignore_empty = Settings.model_config.get("env_ignore_empty", False)
    in_environment = {name.lower() for name, value in os.environ.items() if value or not ignore_empty}
    sources: dict[str, SettingSource] = {}
    for name in Settings.model_fields:
        if overrides.get(name) is not None:
            sources[name] = "flag"
        elif f"{ENV_PREFIX}{name}".lower() in in_environment:
            sources[name] = "env"
        elif name in in_file:
            sources[name] = "file"
        else:
            sources[name] = "default"
    return sources

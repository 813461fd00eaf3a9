"""limen's own tables: users and their credentials, and the audit trail.

VMs are not here: libvirt is their one source of truth (a VM's owner lives in its domain metadata).
Audit rows keep the user's *name*, not a foreign key, so that they outlive the user they name.
Every timestamp is timezone-aware UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    TypeDecorator,
    text,
    true,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAME_MAX = 64
TOKEN_NAME_MAX = 100
# What a VM action names: a VM, or for ``delete-volume`` a volume, whose name may be a file's longest.
ACTION_TARGET_MAX = 255
CODE_MAX = 40


class Role(StrEnum):
    ADMIN = "admin"  # sees and does everything
    USER = "user"  # sees and acts on the VMs it owns


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every dialect (SQLite stores none, and returns naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    __table_args__ = (CheckConstraint("role IN ('admin', 'user')", name="ck_users_role"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_MAX), unique=True)
    # The name case-folded (limen.auth.names.name_key): unique, so "Sec" beside "sec" is refused.
    name_key: Mapped[str] = mapped_column(String(256), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16), default=Role.USER.value)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    # False while a self-registered account waits for an administrator (LIMEN_REGISTRATION=approval).
    approved: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    # The UI's language the user chose (limen.i18n.LANGUAGE_CODES); NULL: the browser's Accept-Language.
    language: Mapped[str | None] = mapped_column(String(8), nullable=True, default=None)


class ApiToken(Base):
    """A script's credential. Only the SHA-256 of the secret is kept; ``prefix`` lets people tell tokens apart."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(TOKEN_NAME_MAX))
    prefix: Mapped[str] = mapped_column(String(16))
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)


class BrowserSession(Base):
    """A signed-in browser. The cookie's value is the secret; only its SHA-256 is the key here."""

    __tablename__ = "browser_sessions"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    # Not a credential on its own: it is only checked together with the cookie.
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)


class ConsoleSessionRecord(Base):
    """One console session: who opened which VM's console, from where, for how long, how much traffic."""

    __tablename__ = "console_sessions"
    # Sweeps for sessions of lost instances (limen.recovery) read the live rows only.
    __table_args__ = (
        Index("ix_console_sessions_live", "instance_id", sqlite_where=text("ended_at IS NULL"),
              postgresql_where=text("ended_at IS NULL")),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # the console session's own id
    user_name: Mapped[str] = mapped_column(String(NAME_MAX), index=True)
    vm_uuid: Mapped[str] = mapped_column(String(36), index=True)
    vm_name: Mapped[str] = mapped_column(String(NAME_MAX))
    client_address: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    bytes_to_client: Mapped[int] = mapped_column(BigInteger, default=0)
    bytes_from_client: Mapped[int] = mapped_column(BigInteger, default=0)
    end_code: Mapped[str | None] = mapped_column(String(CODE_MAX), nullable=True)  # "OK" or an ErrorCode name
    terminated_by: Mapped[str | None] = mapped_column(String(NAME_MAX), nullable=True)
    # The limen instance that holds the session (LimenInstance.id): a crashed instance's rows are closed.
    instance_id: Mapped[str | None] = mapped_column(String(40), nullable=True, index=True)
    # Which credential opened it ("token:<id>", "session:<hash prefix>"), so revoking that one finds it.
    credential: Mapped[str | None] = mapped_column(String(80), nullable=True)
    end_details: Mapped[str | None] = mapped_column(String(200), nullable=True)  # why it ended, in words
    kind: Mapped[str] = mapped_column(String(16), default="vnc", server_default="vnc")  # "vnc" or "serial"


class LimenInstance(Base):
    """A running (or once running) ``limen serve`` process; ``heartbeat_at`` says it is still alive."""

    __tablename__ = "limen_instances"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    hostname: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UtcDateTime())
    heartbeat_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    stopped_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    # Which process on which boot of which host (limen.instances.ProcessIdentity.key): lets an instance on
    # the same host and PID namespace tell at once that this one's process is gone.
    process_key: Mapped[str | None] = mapped_column(String(160), nullable=True)


class LoginThrottle(Base):
    """Failed sign-ins of one throttle key (a user at an address, or an address), shared by every instance
    on this database when no Redis is configured. Times are seconds since the epoch."""

    __tablename__ = "login_throttle"

    key: Mapped[str] = mapped_column(String(400), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer)
    in_flight: Mapped[int] = mapped_column(Integer)  # attempts reserved and not yet decided
    blocked_until: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)


class VmAction(Base):
    """A VM action (create, start, stop, reboot, delete, set owner) and who asked for it."""

    __tablename__ = "vm_actions"
    # One pending create per VM name, across every instance: what a lost create left behind is its own.
    __table_args__ = (
        Index("uq_vm_actions_pending_create", "vm_name", unique=True,
              sqlite_where=text("action = 'create' AND finished_at IS NULL"),
              postgresql_where=text("action = 'create' AND finished_at IS NULL")),
        Index("ix_vm_actions_pending", "instance_id", sqlite_where=text("finished_at IS NULL"),
              postgresql_where=text("finished_at IS NULL")),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_name: Mapped[str] = mapped_column(String(NAME_MAX), index=True)
    vm_uuid: Mapped[str | None] = mapped_column(String(36), nullable=True, index=True)
    vm_name: Mapped[str] = mapped_column(String(ACTION_TARGET_MAX))
    action: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    result_code: Mapped[str] = mapped_column(String(CODE_MAX))  # "OK" or an ErrorCode name
    details: Mapped[str] = mapped_column(String(200), default="")
    # Set while the action runs (result_code "STARTED"): which instance does it, so a crash can be cleaned up.
    instance_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)


class UserQuota(Base):
    """An administrator's per-user quota override; a null column falls back to the LIMEN_QUOTA_* default
    (for plain users) or no limit (for administrators)."""

    __tablename__ = "user_quotas"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    max_vms: Mapped[int | None] = mapped_column(Integer, nullable=True)
    max_vcpus: Mapped[int | None] = mapped_column(Integer, nullable=True)
    max_memory_mib: Mapped[int | None] = mapped_column(Integer, nullable=True)
    max_disk_gib: Mapped[int | None] = mapped_column(Integer, nullable=True)


class QuotaLock(Base):
    """One row; every quota check updates it first, so checks run one at a time across every limen
    instance on the database (a row lock on PostgreSQL, the write lock on SQLite)."""

    __tablename__ = "quota_lock"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    generation: Mapped[int] = mapped_column(BigInteger, default=0)


class QuotaReservation(Base):
    """What a change that passed its quota check will make a VM use, until the change is done (then libvirt
    shows it) or failed. Checks count it with what libvirt shows, so parallel changes cannot both pass."""

    __tablename__ = "quota_reservations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_name: Mapped[str | None] = mapped_column(String(NAME_MAX), nullable=True)  # the VM's owner
    vm_name: Mapped[str] = mapped_column(String(NAME_MAX))
    # The VM's UUID; none for a VM being created (libvirt gives it one when it is defined).
    vm_uuid: Mapped[str | None] = mapped_column(String(36), nullable=True)
    running: Mapped[bool] = mapped_column(Boolean)
    vcpus: Mapped[int] = mapped_column(Integer)
    memory_mib: Mapped[int] = mapped_column(Integer)
    disk_bytes: Mapped[int] = mapped_column(BigInteger)
    # The instance making the change: a lost instance's reservations are dropped (limen.recovery).
    instance_id: Mapped[str | None] = mapped_column(String(40), nullable=True, index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class HypervisorHost(Base):
    """A libvirt host limen manages besides the default one (``LIMEN_LIBVIRT_URI``, never stored here).

    ``console_address`` is where browsers' consoles reach its VMs' VNC servers (their wildcard or loopback
    listen addresses mean this host); ``draining`` hosts keep their VMs but take no new ones."""

    __tablename__ = "hypervisor_hosts"

    name: Mapped[str] = mapped_column(String(NAME_MAX), primary_key=True)
    uri: Mapped[str] = mapped_column(String(1000))
    console_address: Mapped[str | None] = mapped_column(String(255), nullable=True)
    draining: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())

"""Audit devices: Vault's JSON-lines audit log, HMAC'd, written to every declared device.

Devices are declared in the app setting KEYMGMT_AUDIT_DEVICES (``shared.settings``), never
through the API (OpenBao >= 2.3). For each audited request ``handle()`` writes a *request*
entry before the operation acts and a *response* entry after it (``Trail``); the ``Broker``
writes each entry to every device, and at least one must take it, or the request fails (fail
closed, as Vault's audit broker) with a 503 that says whether the operation ran: an outage of the
audit sink is an outage, not a server fault (Vault answers ``500 internal error`` for both).
Every string in request and response data, and every token and accessor, is replaced by
``hmac-sha256:<hex>`` under the device's own salt, unless the device logs raw. docs/audit.md
describes the format, the options and the sinks.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import datetime as dt
import hashlib
import hmac
import json
import logging
import os
import re
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from shared.errors import EngineError
from shared.names import is_mount_name
from shared.settings import AuditDevice, Settings, StorageSettings
from shared.vaultapi import REQUEST_ID

if TYPE_CHECKING:
    from shared.records import TokenInfo
    from shared.store import Store
    from shared.vaultapi import ApiRequest, ApiResponse

log = logging.getLogger(__name__)
AUDIT_LOGGER = "keymgmt.audit"  # the log device's logger (the Functions host ships it)
HMAC_PREFIX = "hmac-sha256:"
MAX_BLOCK = 4 * 1024 * 1024  # an append blob block's limit (4 MiB)


NOT_RECORDED = (
    "no audit device could record the request, so it was not carried out; retry when the "
    "audit log is writable again"
)
ANSWER_NOT_RECORDED = (
    "the request was carried out, but no audit device could record its answer, so the answer "
    "is withheld; the operation is safe to retry"
)


class AuditFailed(EngineError):
    """No device could record an entry: the request is refused (or its answer replaced)."""

    status = 503

    def __init__(self, message: str = NOT_RECORDED) -> None:
        super().__init__(message)


# -- hashing (pure) ----------------------------------------------------------------------------


def hmac_value(salt: str, value: str) -> str:
    """Vault's GetIdentifiedHMAC: HMAC-SHA256 keyed with the salt, hex, prefixed."""
    digest = hmac.new(salt.encode(), value.encode(), hashlib.sha256).hexdigest()
    return HMAC_PREFIX + digest


# Go's time.Parse(time.RFC3339, s): seconds required, any fraction, Z or a numeric offset.
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.\d+)?(?:Z|[+-](\d{2}):(\d{2}))"
)


def is_rfc3339(value: str) -> bool:
    """Whether Go's RFC3339 parse accepts ``value`` (OpenBao leaves such strings in clear)."""
    match = _RFC3339.fullmatch(value)
    if match is None:
        return False
    year, month, day, hour, minute, second, off_h, off_m = match.groups()
    try:
        dt.datetime(int(year), int(month), int(day))
    except ValueError:
        return False
    if int(hour) > 23 or int(minute) > 59 or int(second) > 59:
        return False
    return off_h is None or (int(off_h) <= 23 and int(off_m) <= 59)


def hash_walk(value: Any, salt: str) -> Any:
    """``value`` with every string (in maps and lists, at any depth) HMAC'd; map keys,
    numbers, booleans, null and RFC3339 time strings unchanged (OpenBao's HashStructure)."""
    if isinstance(value, str):
        return value if is_rfc3339(value) else hmac_value(salt, value)
    if isinstance(value, Mapping):
        return {key: hash_walk(item, salt) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [hash_walk(item, salt) for item in value]
    return value


def _omit_empty(block: Mapping[str, Any]) -> dict[str, Any]:
    """Go's omitempty: no "", 0, false, null, empty list or map."""
    return {k: v for k, v in block.items() if v not in ("", 0, False, None, [], {}, ())}


def rfc3339_nano(when: float | None = None) -> str:
    """Go's RFC3339Nano in UTC: trailing zeros of the fraction dropped."""
    ns = time.time_ns() if when is None else int(when * 1e9)
    seconds, nanos = divmod(ns, 1_000_000_000)
    text = dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    fraction = f"{nanos:09d}".rstrip("0")
    return f"{text}.{fraction}Z" if fraction else f"{text}Z"


def split_address(remote: str) -> tuple[str, int]:
    """``ApiRequest.remote_address`` as (address, port): "" , "ip", "ip:port", "[v6]:port"
    and a bare IPv6 address all work; port 0 when unknown."""
    remote = remote.strip()
    if not remote:
        return "", 0
    if remote.startswith("["):
        host, _, rest = remote[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
        return host, int(port) if port.isdigit() else 0
    if remote.count(":") == 1:
        host, _, port = remote.partition(":")
        return host, int(port) if port.isdigit() else 0
    return remote, 0  # a bare IPv4 or IPv6 address


# -- entries (pure) ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Mount:
    """The mount a request went to, as audit entries name it."""

    point: str = ""  # "keymgmt/", "auth/token/", "sys/"
    type: str = ""
    accessor: str = ""
    mount_class: str = ""


@dataclass
class Record:
    """What one request's entries say, before any device formats (and hashes) it."""

    id: str
    operation: str
    path: str
    mount: Mount = field(default_factory=Mount)
    token: TokenInfo | None = None  # the caller's token once checked
    presented_token: str | None = None  # what the request carried (valid or not)
    allowed: bool | None = None  # the ACL's decision, when one was made
    granting_policies: Sequence[str] = ()
    data: Mapping[str, Any] | None = None
    remote_address: str = ""
    error: str = ""
    wrap_ttl: int = 0  # the response wrapping the request asked for (seconds; 0: none)
    # response entries only
    response: Mapping[str, Any] | None = None  # the answer's JSON body (None: no body)
    response_error: str = ""  # the entry's error (Vault's generic text for the status)
    response_message: str = ""  # the answer's own error text (response.data.error)


def multierror(text: str) -> str:
    """Go's go-multierror text for one error, as Vault's audit entries carry it."""
    return f"1 error occurred:\n\t* {text}\n\n"


# Vault's logical errors by status: an entry's "error" names the kind; the answer's own text
# is in response.data.error (observed on OpenBao 2.7.2, see docs/audit.md).
_GENERIC_ERRORS = {
    400: "invalid request",
    403: "permission denied",
    405: "unsupported operation",
    500: "internal error",
}


def response_error(status: int, message: str) -> str:
    if message.startswith("1 error occurred:"):
        return message
    if message.startswith("no handler for route "):  # the router's ErrUnsupportedPath
        return multierror("unsupported path")
    return multierror(_GENERIC_ERRORS.get(status, message))


def _time(value: dt.datetime | None) -> str:
    if value is None:
        return ""
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _auth_block(record: Record, device: AuditDevice, salt: str) -> dict[str, Any]:
    token = record.token
    if token is None:
        return {"token_type": "default"}
    raw = device.log_raw
    policy_results: dict[str, Any] | None = None
    if record.allowed is not None:
        policy_results = {"allowed": record.allowed}
        if record.allowed and record.granting_policies:
            policy_results["granting_policies"] = [
                {"name": name, "namespace_id": "root", "type": "acl"}
                for name in record.granting_policies
            ]
    return _omit_empty(
        {
            "client_token": token.id if raw else hmac_value(salt, token.id),
            "accessor": _accessor(token.accessor, device, salt),
            "display_name": token.display_name,
            "policies": list(token.policies),
            "token_policies": list(token.policies),
            "policy_results": policy_results,
            "metadata": dict(token.meta) if token.meta else None,
            "num_uses": token.num_uses if token.num_uses > 0 else 0,
            "entity_id": token.entity_id,
            "token_type": token.type,
            "token_ttl": token.ttl,
            "token_issue_time": _time(token.issue_time),
        }
    )


def _accessor(accessor: str, device: AuditDevice, salt: str) -> str:
    if not accessor or device.log_raw or not device.hmac_accessor:
        return accessor
    return hmac_value(salt, accessor)


def _mount_fields(mount: Mount, *, response: bool = False) -> dict[str, Any]:
    return _omit_empty(
        {
            "mount_point": mount.point,
            "mount_type": mount.type,
            "mount_accessor": mount.accessor,
            "mount_class": mount.mount_class,
        }
    )


def _request_block(record: Record, device: AuditDevice, salt: str) -> dict[str, Any]:
    raw = device.log_raw
    presented = record.presented_token
    address, port = split_address(record.remote_address)
    block: dict[str, Any] = {
        "id": record.id,
        "operation": record.operation,
        **_mount_fields(record.mount),
        "client_token": (presented if raw else hmac_value(salt, presented)) if presented else "",
        "client_token_accessor": _accessor(
            record.token.accessor if record.token else "", device, salt
        ),
        "namespace": {"id": "root"},
        "path": record.path,
        "data": (record.data if raw else hash_walk(record.data, salt)) if record.data else None,
        "remote_address": address,
        "remote_port": port,
        "wrap_ttl": record.wrap_ttl,
    }
    return _omit_empty(block)


def _elide(data: Any) -> Any:
    """elide_list_responses: a list answer's ``keys`` and ``key_info`` become their counts."""
    if not isinstance(data, Mapping):
        return data
    elided = dict(data)
    if isinstance(elided.get("keys"), list):
        elided["keys"] = len(elided["keys"])
    if isinstance(elided.get("key_info"), Mapping):
        elided["key_info"] = len(elided["key_info"])
    return elided


def _response_auth(auth: Mapping[str, Any], device: AuditDevice, salt: str) -> dict[str, Any]:
    raw = device.log_raw
    token = str(auth.get("client_token") or "")
    return _omit_empty(
        {
            "client_token": token if raw or not token else hmac_value(salt, token),
            "accessor": _accessor(str(auth.get("accessor") or ""), device, salt),
            "display_name": auth.get("display_name"),
            "policies": auth.get("policies"),
            "token_policies": auth.get("token_policies"),
            "metadata": auth.get("metadata"),
            "entity_id": auth.get("entity_id"),
            "token_type": auth.get("token_type"),
            "token_ttl": auth.get("lease_duration"),
            "num_uses": auth.get("num_uses") if (auth.get("num_uses") or 0) > 0 else 0,
        }
    )


def _response_wrap_info(info: Mapping[str, Any], device: AuditDevice, salt: str) -> dict[str, Any]:
    """A wrapped answer's wrap_info as Vault's audit entries carry it (HashWrapInfo): the
    token HMAC'd, the accessors as hmac_accessor says."""
    token = str(info.get("token") or "")
    return _omit_empty(
        {
            "ttl": info.get("ttl"),
            "token": token if device.log_raw or not token else hmac_value(salt, token),
            "accessor": _accessor(str(info.get("accessor") or ""), device, salt),
            "creation_time": info.get("creation_time"),
            "creation_path": info.get("creation_path"),
            "wrapped_accessor": _accessor(str(info.get("wrapped_accessor") or ""), device, salt),
        }
    )


def _response_block(record: Record, device: AuditDevice, salt: str) -> dict[str, Any]:
    raw = device.log_raw
    body = record.response
    block: dict[str, Any] = {}
    data: Any = None
    auth: Any = None
    warnings: Any = None
    if record.response_message:
        data = {"error": record.response_message}
    elif isinstance(body, Mapping):
        if "request_id" in body:  # Vault's envelope
            data, auth, warnings = body.get("data"), body.get("auth"), body.get("warnings")
        else:  # a bare JSON answer
            data = body
    if device.elide_list_responses and record.operation == "list":
        data = _elide(data)
    if isinstance(auth, Mapping) and auth:
        block["auth"] = _response_auth(auth, device, salt)
    block.update(_mount_fields(record.mount))
    if data:
        block["data"] = data if raw else hash_walk(data, salt)
    if warnings:
        block["warnings"] = list(warnings)
    wrap_info = body.get("wrap_info") if isinstance(body, Mapping) else None
    if isinstance(wrap_info, Mapping) and wrap_info:
        block["wrap_info"] = _response_wrap_info(wrap_info, device, salt)
    return block


def format_entry(kind: str, record: Record, device: AuditDevice, salt: str) -> dict[str, Any]:
    """One JSON-lines entry (``kind`` "request" or "response") as ``device`` writes it."""
    entry: dict[str, Any] = {
        "time": rfc3339_nano(),
        "type": kind,
        "auth": _auth_block(record, device, salt),
        "request": _request_block(record, device, salt),
    }
    if kind == "response":
        entry["response"] = _response_block(record, device, salt)
    error = record.response_error if kind == "response" else record.error
    if error:
        entry["error"] = error
    return entry


def encode_entry(entry: Mapping[str, Any]) -> bytes:
    return json.dumps(entry, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


# -- sinks -------------------------------------------------------------------------------------


class Sink:
    """Where a device's lines go. ``write`` raises on failure (the broker counts it).
    ``inline``: written on the request's own thread, not the device's pool."""

    inline = False

    def write(self, line: bytes) -> None:
        raise NotImplementedError


class FileSink(Sink):
    """Appends to a file (created with ``mode``, exec bits already stripped), or stdout.

    The file is re-opened when its path no longer names the open file (moved away by a log
    rotation, or deleted): lines go to the file at the path, as an operator expects. A
    directory that is gone or unwritable makes every write fail."""

    def __init__(self, path: str, mode: int) -> None:
        self.path = path
        self.mode = mode
        self._fd: int | None = None
        self._inode: tuple[int, int] | None = None
        self._lock = threading.Lock()

    def _open(self) -> int:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            if self.mode:
                os.fchmod(fd, self.mode)  # an existing file gets the mode too, as OpenBao
            st = os.fstat(fd)
        except OSError:
            os.close(fd)
            raise
        self._inode = (st.st_dev, st.st_ino)
        return fd

    def _current(self) -> int:
        fd = self._fd
        if fd is not None:
            try:
                st = os.stat(self.path)
                if (st.st_dev, st.st_ino) == self._inode:
                    return fd
            except FileNotFoundError:
                pass
            os.close(fd)
            self._fd = None
        self._fd = self._open()
        return self._fd

    def write(self, line: bytes) -> None:
        if self.path == "stdout":
            sys.stdout.buffer.write(line)
            sys.stdout.flush()
            return
        with self._lock:
            fd = self._current()
            view = memoryview(line)
            while view:
                written = os.write(fd, view)
                view = view[written:]

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


class LogSink(Sink):
    """One line per entry on the ``keymgmt.audit`` logger at INFO: best effort (the logging
    module swallows a handler's failure; Application Insights samples)."""

    # On the request's thread: the Functions Python worker ships a log record to Application
    # Insights with the invocation it belongs to, which a pool thread does not carry.
    inline = True

    def __init__(self) -> None:
        self.logger = logging.getLogger(AUDIT_LOGGER)

    def write(self, line: bytes) -> None:
        self.logger.info("%s", line.decode().rstrip("\n"))


def blob_name(device: str, rotate: str, when: dt.datetime, part: int = 0) -> str:
    """``<device>/<yyyy>/<mm>/<dd>[/<hh>].log``, ``-<part>`` before ``.log`` once a blob
    of the period is full (50,000 blocks)."""
    stem = f"{device}/{when:%Y/%m/%d}" + (f"/{when:%H}" if rotate == "hour" else "")
    return f"{stem}-{part}.log" if part else f"{stem}.log"


def blob_service_client(storage: StorageSettings, timeout: float) -> Any:
    """The app's storage account's blob service: the connection string's BlobEndpoint, or
    the identity-based endpoint with the credential the tables use."""
    from azure.storage.blob import BlobServiceClient

    from shared.transport import requests_transport

    options: dict[str, Any] = {
        "transport": requests_transport(
            connection_timeout=max(1, int(timeout / 2)), read_timeout=max(1, int(timeout))
        ),
        "retry_total": 1,
    }
    if storage.connection_string:
        return BlobServiceClient.from_connection_string(storage.connection_string, **options)
    from azure.identity import ManagedIdentityCredential

    credential = ManagedIdentityCredential(client_id=storage.client_id)
    return BlobServiceClient(storage.blob_service_uri or "", credential=credential, **options)


class BlobSink(Sink):
    """Append blobs, one per UTC day (or hour): created if absent (``If-None-Match: *``, so
    an existing blob is never overwritten), each entry one ``append_block``. Under a
    time-based immutability policy with protected append writes, both are allowed."""

    def __init__(
        self,
        device: AuditDevice,
        client_factory: Callable[[], Any],
        clock: Callable[[], dt.datetime],
    ) -> None:
        self.device = device
        self._factory = client_factory
        self._container: Any = None
        self._clock = clock
        self._ready: set[str] = set()  # blobs known to exist
        self._part: dict[str, int] = {}  # period stem → current part
        self._lock = threading.Lock()

    def _container_client(self) -> Any:
        with self._lock:
            if self._container is None:
                self._container = self._factory().get_container_client(self.device.container)
            return self._container

    @staticmethod
    def _create(container: Any, blob: Any) -> None:
        """The append blob, unless it exists (If-None-Match: *: never an overwrite, which an
        immutability policy would refuse anyway); the container too, the first time (Azure's
        is made by infra/, with its WORM policy; Azurite's here)."""
        from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError

        for _ in range(2):
            try:
                blob.create_append_blob(if_none_match="*")
                return
            except ResourceExistsError:
                return  # another instance (or an earlier run) made it
            except ResourceNotFoundError as exc:
                if getattr(exc, "error_code", None) != "ContainerNotFound":
                    raise
                with contextlib.suppress(ResourceExistsError):
                    container.create_container()

    def write(self, line: bytes) -> None:
        from azure.core.exceptions import ResourceExistsError

        if len(line) > MAX_BLOCK:
            raise ValueError(f"entry of {len(line)} bytes is over an append block's 4 MiB")
        container = self._container_client()
        period = blob_name(self.device.path, self.device.rotate, self._clock())
        for _ in range(64):
            part = self._part.get(period, 0)
            name = blob_name(self.device.path, self.device.rotate, self._clock(), part)
            blob = container.get_blob_client(name)
            if name not in self._ready:
                self._create(container, blob)
                self._ready.add(name)
            try:
                blob.append_block(line)
                return
            except ResourceExistsError as exc:  # 409: BlockCountExceedsLimit and friends
                if getattr(exc, "error_code", None) != "BlockCountExceedsLimit":
                    raise
                with self._lock:
                    if self._part.get(period, 0) == part:
                        self._part[period] = part + 1
        raise RuntimeError("no append blob of this period took the entry")


# -- the broker --------------------------------------------------------------------------------


def make_sink(device: AuditDevice, settings: Settings) -> Sink:
    if device.type == "file":
        return FileSink(device.file_path, device.mode)
    if device.type == "log":
        return LogSink()
    client: list[Any] = []
    lock = threading.Lock()

    def factory() -> Any:
        with lock:
            if not client:
                client.append(blob_service_client(settings.storage, settings.audit_write_timeout))
            return client[0]

    return BlobSink(device, factory, lambda: dt.datetime.now(dt.UTC))


class Broker:
    """Writes each entry to every device; fails when devices exist and none took it."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        *,
        sinks: Mapping[str, Sink] | None = None,
    ) -> None:
        self.devices = settings.audit_devices
        self.timeout = settings.audit_write_timeout
        self._store = store
        self._sinks = (
            dict(sinks)
            if sinks is not None
            else {d.path: make_sink(d, settings) for d in self.devices}
        )
        self._salts: dict[str, str] = {}
        self._accessors: dict[str, str] = {}
        self._lock = threading.Lock()
        # One small pool per device: a device that hangs keeps its own threads, not another's.
        self._pools = {
            d.path: concurrent.futures.ThreadPoolExecutor(4, thread_name_prefix=f"audit-{d.path}")
            for d in self.devices
        }

    @property
    def enabled(self) -> bool:
        return bool(self.devices)

    def device(self, path: str) -> AuditDevice | None:
        path = path.rstrip("/")
        return next((d for d in self.devices if d.path == path), None)

    def salt(self, device: str) -> str:
        with self._lock:
            salt = self._salts.get(device)
        if salt is None:
            salt = self._store.audit_salt(device)
            with self._lock:
                self._salts[device] = salt
        return salt

    def forget(self) -> None:
        """Drop cached salts (the table was lost and recreated with new ones)."""
        with self._lock:
            self._salts.clear()
            self._accessors.clear()

    def hash(self, device: str, value: str) -> str:
        """sys/audit-hash: ``value`` HMAC'd as ``device`` would write it."""
        return hmac_value(self.salt(device), value)

    def mount_accessor(self, mount: str) -> str:
        with self._lock:
            known = self._accessors.get(mount)
        if known is None:
            if not is_mount_name(mount):  # no such mount can exist: no lookup
                return ""
            try:
                record = self._store.get_mount(mount)
            except EngineError:  # storage trouble: the entry goes without the accessor
                return ""
            if record is None:
                return ""
            known = f"{record.type}_{record.uuid[:8]}"  # as sys/mounts shows it
            with self._lock:
                self._accessors[mount] = known
        return known

    def auth_mount(self, name: str) -> tuple[str, str]:
        """An auth method's type and accessor, ("", "") when there is none. Not cached: a
        method disabled and enabled again has a new accessor, and only its own (rare)
        requests pay this read."""
        if not is_mount_name(name):
            return "", ""
        try:
            record = self._store.get_auth_mount(name)
        except EngineError:  # storage trouble: the entry goes without the mount
            return "", ""
        return ("", "") if record is None else (record.type, record.accessor)

    def _write_one(self, device: AuditDevice, kind: str, record: Record) -> None:
        salt = self.salt(device.path)
        self._sinks[device.path].write(encode_entry(format_entry(kind, record, device, salt)))

    @staticmethod
    def _failed(path: str, kind: str, exc: Exception) -> None:
        # The type and first line only: never the entry (it may be raw).
        text = str(exc).splitlines()[0][:200] if str(exc) else ""
        log.error(
            "audit device %s/ failed to log the %s: %s: %s", path, kind, type(exc).__name__, text
        )

    def log(self, kind: str, record: Record) -> None:
        """Write one entry to every device; AuditFailed if none took it."""
        if not self.devices:
            return
        futures = {
            d.path: self._pools[d.path].submit(self._write_one, d, kind, record)
            for d in self.devices
            if not self._sinks[d.path].inline
        }
        written = 0
        for d in self.devices:
            if self._sinks[d.path].inline:
                try:
                    self._write_one(d, kind, record)
                    written += 1
                except Exception as exc:
                    self._failed(d.path, kind, exc)
        deadline = time.monotonic() + self.timeout
        for path, future in futures.items():
            try:
                future.result(timeout=max(0.0, deadline - time.monotonic()))
                written += 1
            except concurrent.futures.TimeoutError:
                log.error(
                    "audit device %s/ did not write the %s entry within %s s",
                    path,
                    kind,
                    self.timeout,
                )
            except Exception as exc:  # any sink failure counts, none escapes
                self._failed(path, kind, exc)
        if not written:
            log.error("no audit device succeeded in logging the %s: path=%s", kind, record.path)
            raise AuditFailed()


# -- the hook in handle() ----------------------------------------------------------------------


class Trail:
    """One request's audit entries. ``handle()`` calls ``before`` just before the handler
    acts, and passes every answer through ``after``."""

    def __init__(self, request: ApiRequest, *, audited: bool) -> None:
        self.request = request
        self.audited = audited
        self.id = str(uuid.uuid4())
        self.logged_request = False
        self.failed = False
        self._broker: Broker | None = None

    @contextlib.contextmanager
    def active(self) -> Iterator[Trail]:
        token = REQUEST_ID.set(self.id)
        try:
            yield self
        finally:
            REQUEST_ID.reset(token)

    def _broker_of(self, context: Any) -> Broker | None:
        if not self.audited:
            return None
        if self._broker is None:
            try:
                self._broker = context.service.audit
            except Exception:  # no service: nothing acted, nothing to record
                return None
        return self._broker if self._broker.enabled else None

    def before(self, context: Any, spec: Any) -> None:
        """The request entry, after the token, ACL and create/update checks; AuditFailed if
        no device took it (the handler must not run then)."""
        broker = self._broker_of(context)
        if broker is None:
            return
        record = self._record(context, spec, broker, allowed=True)
        try:
            broker.log("request", record)
        except AuditFailed:
            self.failed = True
            raise
        self.logged_request = True

    def after(self, context: Any, spec: Any, response: ApiResponse) -> ApiResponse:
        """The response entry (and, for a request refused before ``before``, its request
        entry with the error). A 500 if no device took them."""
        from shared import vaultapi

        broker = None if self.failed else self._broker_of(context)
        if broker is None:
            return response
        body = _json_body(response)
        message = ""
        if response.status >= 400 and isinstance(body, Mapping):
            errors = body.get("errors") or []
            message = "\n".join(str(e) for e in errors) if isinstance(errors, list) else ""
        try:
            bad_token = spec.authenticated and context.token is None
            if not self.logged_request:
                denied = response.status == 403 and not bad_token
                record = self._record(context, spec, broker, allowed=False if denied else None)
                # As Vault: a refused token or an ACL denial is on the request entry too;
                # other errors only on the response entry (they come from the handler there).
                if bad_token and response.status == 403:
                    record.error = message
                elif denied:
                    record.error = multierror("permission denied")
                broker.log("request", record)
            else:
                record = self._record(context, spec, broker, allowed=True)
            # A new record: a device that timed out on the request entry may still be
            # formatting the old one.
            answered = dataclasses.replace(
                record,
                response=body if isinstance(body, Mapping) else None,
                response_message=message,
                response_error=response_error(response.status, message) if message else "",
            )
            broker.log("response", answered)
        except AuditFailed:
            return vaultapi.error(
                503, NOT_RECORDED if not self.logged_request else ANSWER_NOT_RECORDED
            )
        except Exception:
            log.exception("the audit entry of %s could not be made", spec.pattern)
            return vaultapi.error(
                503, NOT_RECORDED if not self.logged_request else ANSWER_NOT_RECORDED
            )
        return response

    def _record(self, context: Any, spec: Any, broker: Broker, *, allowed: bool | None) -> Record:
        from shared import vaultapi
        from shared.api import acl_path

        request = self.request
        try:
            operation = context.operation or vaultapi.operation(request)
        except EngineError:
            operation = request.method.lower()
        params = context.params
        path = context.path or acl_path(spec, params, operation)
        data: Mapping[str, Any] | None = None
        if operation in ("read", "list"):
            query = {k: v for k, v in request.query.items() if k != "list"}
            data = query or None
        else:
            data = context.data.raw or None
            if data is None and request.body.strip():
                try:  # refused before the body was parsed: record it as Vault does
                    data = vaultapi.parse_body(request, context.service.settings.max_body_bytes)
                except Exception:  # not a body: nothing to record
                    data = None
        token = context.token
        granting: list[str] = []
        if allowed and token is not None:
            granting = _granting(context, token, path, operation)
        return Record(
            id=self.id,
            operation=operation,
            path=path,
            mount=_mount(spec, params, broker),
            token=token,
            presented_token=request.token,
            allowed=allowed if token is not None else None,
            granting_policies=granting,
            data=data,
            remote_address=request.remote_address,
            wrap_ttl=getattr(context, "wrap_ttl", 0),
        )


def _json_body(response: ApiResponse) -> Any:
    if not response.body:
        return None
    try:
        return json.loads(response.body)
    except ValueError:
        return None


def _mount(spec: Any, params: Mapping[str, str], broker: Broker) -> Mount:
    pattern: str = spec.pattern
    if spec.mounted:
        name = params.get("mount", "")
        accessor = broker.mount_accessor(name) if name else ""
        if not accessor:
            return Mount()
        return Mount(f"{name}/", "keymgmt", accessor, "secret")
    if pattern.startswith("auth/token/"):
        from shared.api.auth import TOKEN_METHOD

        return Mount("auth/token/", "token", str(TOKEN_METHOD["accessor"]), "auth")
    if pattern.startswith("auth/:mount/"):
        name = params.get("mount", "")
        method, accessor = broker.auth_mount(name)
        return Mount(f"auth/{name}/", method, accessor, "auth") if method else Mount()
    if pattern.startswith("sys/"):
        return Mount("sys/", "system", "", "secret")
    return Mount()


def _granting(context: Any, token: TokenInfo, path: str, operation: str) -> list[str]:
    """The token's policies that alone grant the request (Vault's granting_policies)."""
    from shared.policy import ROOT_POLICY, requires_sudo

    if ROOT_POLICY in token.policies:
        return [ROOT_POLICY]
    if operation in ("read", "list"):
        sent: Mapping[str, Any] = {k: v for k, v in context.request.query.items() if k != "list"}
    else:
        sent = context.data.raw
    policies = context.service.policies
    sudo = requires_sudo(path)
    return [
        name
        for name in token.policies
        if policies.single_acl(name).allows(path, operation, sent, sudo=sudo)
    ]

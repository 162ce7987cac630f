"""``s3://BUCKET/PREFIX`` through the minio client (MinIO, AWS S3, any S3-compatible server).

minio is imported here only, so hooks that never touch S3 never pay for it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, BinaryIO

from taydash_hooks.errors import Exit, TaydashError, environment, refused
from taydash_hooks.output import log
from taydash_hooks.store.base import (
    Features,
    Health,
    KeyTaken,
    Properties,
    S3Options,
    Version,
    Written,
    check_key,
    from_attempt,
)

FEATURES_TTL = 7 * 86400  # seconds a probe of a server's features is believed; doctor re-probes
DELETE_ROUNDS = 4  # listings of a prefix being deleted before what is left is reported
PROBE_PREFIX = ".taydash-probe/"  # under the store prefix; removed right after the probe
PART_SIZE = 8 * 1024 * 1024  # memory per in-flight part; bounds a streamed upload
# S3 allows 10,000 parts: the part size doubles every PARTS_PER_STEP parts, so memory stays at
# 8 MiB a part for dumps up to 16 GiB and an object can still reach about 500 GiB.
PARTS_PER_STEP = 2000


def part_size(number: int) -> int:
    """The size of part ``number`` (1-based)."""
    return PART_SIZE << min((number - 1) // PARTS_PER_STEP, 4)
UPLOADERS = 2  # parts uploaded at once
QUEUED = 1  # parts read ahead and waiting: reading stops (and pg_dump blocks) beyond this

CREDENTIAL_VARS = (
    ("TAYDASH_S3_ACCESS_KEY", "TAYDASH_S3_SECRET_KEY"),
    ("MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD"),
    ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"),
)


class NoCredentials(TaydashError):
    """No pair of :data:`CREDENTIAL_VARS` is set (exit 3); ``export`` is the fix to print."""

    def __init__(self) -> None:
        names = ", ".join(f"{a}/{s}" for a, s in CREDENTIAL_VARS)
        super().__init__(f"no S3 credentials found; set one of {names}.", Exit.ENVIRONMENT)
        self.export = " or ".join(f"{a}/{s}" for a, s in CREDENTIAL_VARS)


def credentials(env: Mapping[str, str] | None = None) -> tuple[str, str]:
    """The first complete pair of :data:`CREDENTIAL_VARS` in the environment (in that order);
    :class:`NoCredentials` when none is set."""
    env = os.environ if env is None else env
    for access, secret in CREDENTIAL_VARS:
        if env.get(access) and env.get(secret):
            return env[access], env[secret]
    raise NoCredentials()


def _read_part(reader: Any, want: int = PART_SIZE) -> bytes:
    """Up to ``want`` bytes (fewer only at the end of the stream)."""
    chunks, size = [], 0
    while size < want:
        chunk = reader.read(min(want - size, 4 * 1024 * 1024))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _object_headers(retention: Any) -> dict[str, str | list[str] | tuple[str]]:
    """The headers of every object we write (Object Lock retention when configured)."""
    from minio.helpers import genheaders

    headers: dict[str, str | list[str] | tuple[str]] = genheaders(None, None, None, retention, False)
    headers["Content-Type"] = "application/octet-stream"
    return headers


def _md5(data: bytes) -> dict[str, str | list[str] | tuple[str]]:
    """Content-MD5, which Object Lock requires on every object and part it protects."""
    import base64
    import hashlib

    return {"Content-MD5": base64.b64encode(hashlib.md5(data).digest()).decode()}  # noqa: S324


def _causes(exc: BaseException) -> list[BaseException]:
    found, seen = [], set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        found.append(e)
        todo += [e.__cause__, e.__context__, getattr(e, "reason", None)
                 if isinstance(getattr(e, "reason", None), BaseException) else None]
    return found


def _tls_hint(exc: BaseException, secure: bool) -> str:
    """The likely cause when TLS and plain HTTP meet, decided on exception types."""
    import http.client
    import ssl

    from urllib3.exceptions import ProtocolError, SSLError

    causes = _causes(exc)
    if secure and any(isinstance(e, (ssl.SSLError, SSLError)) for e in causes):
        return ("secure = true, but the endpoint does not speak TLS; set secure = false in "
                "[snapshots.s3] (or use its https port)")
    if not secure and any(isinstance(e, (ProtocolError, http.client.BadStatusLine,
                                          http.client.RemoteDisconnected, ConnectionResetError))
                          for e in causes):
        return ("the endpoint closed a plain HTTP request; if it expects TLS, set secure = true "
                "in [snapshots.s3]")
    return ""


def _explain(exc: BaseException, bucket: str, endpoint: str, secure: bool = False,
             access_key: str = "") -> TaydashError:
    """One sentence for what the S3 client raised (never echoing credentials)."""
    from minio.error import S3Error
    from urllib3.exceptions import HTTPError

    if isinstance(exc, S3Error):
        if exc.code == "NoSuchBucket":
            return environment(f"bucket {bucket} does not exist at {endpoint}; create it first.")
        if exc.code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied"):
            used = f" for access key id {access_key}" if access_key else ""
            return environment(f"{endpoint} rejected the S3 credentials{used} ({exc.code}; "
                               "they come from TAYDASH_S3_ACCESS_KEY/TAYDASH_S3_SECRET_KEY, "
                               "else MINIO_ROOT_*, else AWS_*).")
        return environment(f"S3 error from {endpoint}: {exc.code} ({exc.message}).")
    if isinstance(exc, (HTTPError, OSError)):
        hint = _tls_hint(exc, secure)
        return environment(f"cannot reach the S3 endpoint {endpoint} ({type(exc).__name__}"
                           f"{': ' + hint if hint else ''}).")
    return environment(f"S3 request to {endpoint} failed ({type(exc).__name__}: {exc}).")


class S3Store:
    """Backups in a bucket. The server's features are probed, never assumed; bucket settings
    are never changed here (``taydash store init`` is the one that asks)."""

    def __init__(self, bucket: str, prefix: str, cfg: S3Options,
                 env: Mapping[str, str] | None = None) -> None:
        from minio import Minio
        from urllib3 import PoolManager, Retry, Timeout

        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.cfg = cfg
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self._access, self._secret = credentials(env)
        # Few quick retries: a dead server must fail the snapshot in seconds, not minutes.
        http = PoolManager(timeout=Timeout(connect=5, read=120),
                           retries=Retry(total=2, backoff_factor=0.2,
                                         status_forcelist=[500, 502, 503, 504]))
        self.client = Minio(cfg.endpoint, access_key=self._access, secret_key=self._secret,
                            secure=cfg.secure, region=cfg.region or None, http_client=http)
        self._checked = False
        self._locked: bool | None = None
        self._features: Features | None = None
        self._cached = False  # whether _features came from the cache file, not the server

    def _err(self, exc: BaseException) -> TaydashError:
        return _explain(exc, self.bucket, self.cfg.endpoint, self.cfg.secure, self._access)

    def _key(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run a minio call; its failure becomes one sentence (exit 3)."""
        try:
            return fn(*args, **kwargs)
        except TaydashError:
            raise
        except Exception as exc:
            raise self._err(exc) from None

    def ensure_bucket(self) -> None:
        """The bucket exists and its features are known (a bucket without versioning is said,
        once, and left as it is: changing bucket settings is for whoever is asked to)."""
        if self._checked:
            return
        if not self.call(self.client.bucket_exists, self.bucket):
            raise environment(
                f"bucket {self.bucket} does not exist at {self.cfg.endpoint}; create it first.")
        found = self.features()
        if found.versioning != "Enabled":
            log.warning("bucket %s has versioning %s: an overwritten or deleted backup cannot be "
                        "recovered from an older version (turn it on: taydash store init --yes)",
                        self.bucket, found.versioning.lower())
        self._checked = True

    # --- what the server really does -----------------------------------------------

    def _cache_file(self) -> Path | None:
        if self.cfg.cache_dir is None:
            return None
        import hashlib

        ident = hashlib.sha256(f"{self.cfg.endpoint} {self.bucket}".encode()).hexdigest()[:20]
        return self.cfg.cache_dir / f"s3-features-{ident}.json"

    def features(self, refresh: bool = False) -> Features:
        if self._features is not None and not refresh:
            return self._features
        import json
        import time

        from taydash_hooks.statefiles import read_private, write_private

        cache = self._cache_file()
        if cache is not None and not refresh:
            with contextlib.suppress(OSError, ValueError, TypeError, KeyError, TaydashError):
                doc = json.loads(read_private(cache))
                if doc["endpoint"] == self.cfg.endpoint and doc["bucket"] == self.bucket \
                        and time.time() - float(doc["probed"]) < FEATURES_TTL \
                        and (doc["object_lock"] is not None or self.cfg.object_lock_days <= 0):
                    self._features = Features(str(doc["versioning"]), bool(doc["version_listing"]),
                                              bool(doc["conditional_create"]), doc["object_lock"])
                    self._cached = True
                    return self._features
        self._cached = False
        self._features = self._probe()
        if cache is not None:
            with contextlib.suppress(OSError, TaydashError):
                write_private(cache, json.dumps({
                    "endpoint": self.cfg.endpoint, "bucket": self.bucket, "probed": time.time(),
                    **self._features.__dict__}).encode())
        return self._features

    def _probe(self) -> Features:
        """Ask the server: its versioning status, whether it lists versions, and whether a
        probe key created twice is refused the second time."""
        import secrets

        from minio.error import S3Error

        status = self.call(self.client.get_bucket_versioning, self.bucket).status or "Off"
        name = self._key(f"{PROBE_PREFIX}{secrets.token_hex(8)}")
        self.call(self.client._put_object, self.bucket, name, b"probe", {"If-None-Match": "*"})
        try:
            try:
                self.client._put_object(self.bucket, name, b"again", {"If-None-Match": "*"})
                conditional = False
            except S3Error as exc:
                if exc.code not in ("PreconditionFailed", "ConditionalRequestConflict"):
                    raise self._err(exc) from None
                conditional = True
            try:
                versions = [o.version_id for o in self.client.list_objects(
                    self.bucket, name, include_version=True)]
                listing = True
            except S3Error:
                versions, listing = [None], False
        finally:
            with contextlib.suppress(Exception):
                for version in versions or [None]:
                    self.client.remove_object(self.bucket, name, version_id=version)
        lock = self._bucket_locked() if self.cfg.object_lock_days > 0 else None
        return Features(status, listing, conditional, lock)

    def init(self, lock_days: int, apply: bool) -> list[str]:
        """Create the bucket when missing (with Object Lock when ``lock_days``; only possible
        at creation), turn versioning on; on an existing bucket change nothing unless
        ``apply``. What was (or would be) done, one line each."""
        from minio.commonconfig import ENABLED
        from minio.versioningconfig import VersioningConfig

        said: list[str] = []
        if not self.call(self.client.bucket_exists, self.bucket):
            self.call(self.client.make_bucket, self.bucket, object_lock=lock_days > 0)
            said.append(f"created bucket {self.bucket}" + (" with Object Lock" if lock_days else ""))
            exists = False
        else:
            exists = True
            if lock_days and not self._bucket_locked():
                said.append(f"bucket {self.bucket} has no Object Lock, and it can only be chosen "
                            "when a bucket is created: use a new bucket for object_lock_days")
        status = self.call(self.client.get_bucket_versioning, self.bucket).status
        if status != ENABLED:
            if exists and not apply:
                said.append(f"would turn versioning on for bucket {self.bucket} (it is "
                            f"{(status or 'off').lower()}); nothing changed without --yes")
            else:
                from minio.error import S3Error

                try:
                    self.client.set_bucket_versioning(self.bucket, VersioningConfig(ENABLED))
                    said.append(f"turned versioning on for bucket {self.bucket}")
                except S3Error as exc:
                    found = self.features(refresh=True)
                    lacks = ["versioning"] + ([] if found.conditional_create
                                              else ["conditional writes"])
                    accept = ("" if found.conditional_create else
                              "; without conditional writes taydash refuses to snapshot unless "
                              "[snapshots.s3] unsafe_single_writer = true (only one machine "
                              "ever snapshots)")
                    raise environment(
                        f"the S3 server at {self.cfg.endpoint} lacks {' and '.join(lacks)}: it "
                        f"refused to turn versioning on for bucket {self.bucket} ({exc.code}), "
                        "so this command cannot do more there. Snapshots work without versions "
                        "(an overwritten or deleted backup then cannot be recovered; use MinIO "
                        f"or AWS S3 for that){accept}.") from None
        elif exists:
            said.append(f"bucket {self.bucket} exists with versioning on: nothing to do")
        self._features = None
        self.features(refresh=True)
        return said

    def prepare_writes(self) -> None:
        self.ensure_bucket()
        # What a snapshot's safety rests on is asked of the server itself, once per run: a
        # cached answer (a file anyone with this clone's account could have rewritten, or a
        # server changed since) never decides that two writers cannot both win.
        found = self.features()
        if self._cached:
            found = self.features(refresh=True)
        if not found.conditional_create and not self.cfg.unsafe_single_writer:
            raise environment(
                f"the S3 server at {self.cfg.endpoint} does not honour conditional writes "
                "(If-None-Match): two clones snapshotting one tag would both believe they own "
                "it, and one backup would be lost. Nothing was stored. Use a server that does "
                "(MinIO, AWS S3), or set [snapshots.s3] unsafe_single_writer = true if only one "
                "machine ever snapshots.")
        if self.cfg.object_lock_days > 0 and not found.object_lock:
            raise environment(
                f"[snapshots.s3] object_lock_days = {self.cfg.object_lock_days}, but bucket "
                f"{self.bucket} has no Object Lock (it can only be chosen when a bucket is "
                "created); nothing was stored.")

    def _retention(self) -> Any:
        if self.cfg.object_lock_days <= 0:
            return None
        from minio.commonconfig import GOVERNANCE
        from minio.retention import Retention

        until = datetime.now(timezone.utc) + timedelta(days=self.cfg.object_lock_days)
        return Retention(GOVERNANCE, until)

    def _abort_uploads(self, name: str, exact: bool = True) -> int:
        # minio aborts its multipart upload on Exception, not on KeyboardInterrupt.
        count = 0
        with contextlib.suppress(Exception):
            result = self.client._list_multipart_uploads(self.bucket, prefix=name)
            for upload in result.uploads:
                obj = str(upload.object_name)
                if obj == name or (not exact and from_attempt(name, obj)):
                    self.client._abort_multipart_upload(self.bucket, obj, str(upload.upload_id))
                    count += 1
        return count

    def clean_partial(self, prefix: str) -> int:
        return self._abort_uploads(self._key(prefix), exact=False)

    def put_stream(self, key: str, stream: BinaryIO) -> Written:
        from taydash_hooks.store.base import HashingReader

        self.ensure_bucket()
        name = self._key(key)
        if self.exists(key):
            raise KeyTaken(key, self.url)
        reader = HashingReader(stream)
        try:
            version_id = self._upload(name, reader)
        except TaydashError:
            self._abort_uploads(name)
            raise
        except Exception as exc:
            self._abort_uploads(name)
            raise self._err(exc) from None
        except BaseException:
            self._abort_uploads(name)
            raise
        return Written(key, reader.size, reader.sha.hexdigest(), version_id)

    def _upload(self, name: str, reader: BinaryIO | Any) -> str | None:
        """A multipart upload with a bounded read-ahead; returns the version id.

        minio's own put_object queues parts without limit when the server is
        slower than the producer, so memory would grow with the dump. Here at
        most UPLOADERS + QUEUED + 1 parts exist at any time.
        """
        import queue
        import threading

        from minio.datatypes import Part

        retention = self._retention()
        headers = _object_headers(retention)

        def checksum(data: bytes) -> dict[str, str | list[str] | tuple[str]] | None:
            return _md5(data) if retention is not None else None

        first = _read_part(reader)
        if len(first) < PART_SIZE:
            single = {**headers, **(checksum(first) or {})}
            return self.client._put_object(self.bucket, name, first, single).version_id
        upload_id = self.client._create_multipart_upload(self.bucket, name, headers)
        etags: dict[int, str] = {}
        errors: list[BaseException] = []
        todo: queue.Queue[tuple[int, bytes] | None] = queue.Queue(maxsize=QUEUED)

        def upload() -> None:
            while (item := todo.get()) is not None:
                if errors:
                    continue  # drain: the reader stops at its next part
                try:
                    etags[item[0]] = self.client._upload_part(
                        self.bucket, name, item[1], checksum(item[1]), upload_id, item[0])
                except BaseException as exc:
                    errors.append(exc)

        workers = [threading.Thread(target=upload, daemon=True) for _ in range(UPLOADERS)]
        for w in workers:
            w.start()
        try:
            try:
                number, data = 1, first
                while data and not errors:
                    todo.put((number, data))
                    number, data = number + 1, _read_part(reader, part_size(number + 1))
            finally:
                for _ in workers:
                    todo.put(None)
                for w in workers:
                    w.join()
            if errors:
                raise errors[0]
            parts = [Part(n, etags[n]) for n in sorted(etags)]
            done = self.client._complete_multipart_upload(self.bucket, name, upload_id, parts)
            if retention is not None:
                # Some servers (moto) ignore retention headers on CreateMultipartUpload:
                # set it on the finished version explicitly.
                self.client.set_object_retention(self.bucket, name, retention,
                                                 version_id=done.version_id)
            return done.version_id
        except BaseException:
            with contextlib.suppress(Exception):
                self.client._abort_multipart_upload(self.bucket, name, upload_id)
            raise

    def put_bytes(self, key: str, data: bytes) -> Written:
        from minio.error import S3Error

        self.ensure_bucket()
        name = self._key(key)
        retention = self._retention()
        headers = _object_headers(retention)
        # Created only if absent (If-None-Match: *, honoured by S3, MinIO and moto): of two
        # runs writing the same manifest at once, exactly one wins and nothing is replaced.
        headers["If-None-Match"] = "*"
        if not self.features().conditional_create:
            # Only with unsafe_single_writer (prepare_writes refuses otherwise): the best a
            # server that ignores the header allows, which two writers at once can defeat.
            self.prepare_writes()
            if self.exists(key):
                raise KeyTaken(key, self.url)
        if retention is not None:
            headers.update(_md5(data))
        try:
            result = self.client._put_object(self.bucket, name, data, headers)
        except S3Error as exc:
            if exc.code in ("PreconditionFailed", "ConditionalRequestConflict"):
                raise KeyTaken(key, self.url) from None
            raise self._err(exc) from None
        except Exception as exc:
            raise self._err(exc) from None
        import hashlib

        return Written(key, len(data), hashlib.sha256(data).hexdigest(), result.version_id)

    def exists(self, key: str) -> bool:
        from minio.error import S3Error

        try:
            self.client.stat_object(self.bucket, self._key(key))
            return True
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchObject", "ResourceNotFound"):
                return False
            raise self._err(exc) from None
        except Exception as exc:
            raise self._err(exc) from None

    @contextlib.contextmanager
    def open(self, key: str, version_id: str | None = None) -> Iterator[BinaryIO]:
        from minio.error import S3Error

        try:
            resp = self.client.get_object(self.bucket, self._key(key), version_id=version_id)
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchVersion"):
                raise refused(f"{key} (version {version_id or 'latest'}) is not in {self.url}.") \
                    from None
            raise self._err(exc) from None
        except Exception as exc:
            raise self._err(exc) from None
        try:
            yield resp  # type: ignore[misc]  # urllib3 response: read(n) like a file
        finally:
            resp.close()
            resp.release_conn()

    def keys(self, prefix: str) -> list[str]:
        full = self._key(prefix) if prefix else (self.prefix + "/" if self.prefix else "")
        if prefix.endswith("/") and not full.endswith("/"):
            full += "/"
        objs = self.call(lambda: list(self.client.list_objects(self.bucket, full, recursive=True)))
        strip = len(self.prefix) + 1 if self.prefix else 0
        return sorted(o.object_name[strip:] for o in objs)

    def delete_prefix(self, prefix: str) -> None:
        # A few rounds: after a writer (vmbackup) is killed, uploads it had in flight can
        # still land for a moment after the first listing.
        for attempt in range(DELETE_ROUNDS):
            self._delete_listed(prefix)
            left = self.keys(prefix.rstrip("/") + "/")
            if not left:
                return
            if attempt + 1 < DELETE_ROUNDS:
                import time

                time.sleep(0.5 * (attempt + 1))
        raise environment(f"{len(left)} object(s) under {prefix} are still in {self.url} "
                          f"after they were deleted (first: {left[0]}).")

    def _delete_listed(self, prefix: str) -> None:
        from minio.deleteobjects import DeleteObject

        full = self._key(prefix.rstrip("/")) + "/"
        versions = self.features().version_listing
        objs = self.call(lambda: list(self.client.list_objects(
            self.bucket, full, recursive=True, include_version=versions)))
        pairs = [(str(o.object_name), o.version_id if versions else None) for o in objs]
        todo = [DeleteObject(name, vid) for name, vid in pairs]
        if todo:
            from minio.error import S3Error

            try:
                for err in list(self.client.remove_objects(self.bucket, todo)):
                    log.warning("could not delete %s: %s", err.name, err.message)
            except S3Error:
                # A server whose batch delete fails (s3rver answers InternalError): one by one.
                for name, vid in pairs:
                    self.call(self.client.remove_object, self.bucket, name, version_id=vid)

    def adopt(self, prefix: str) -> None:
        return None

    def delete(self, key: str, version_id: str | None = None) -> None:
        name = self._key(key)
        found = self.features()
        if not found.version_listing or found.versioning == "Off":
            # One object per key: it is the one to remove (a version id means nothing here).
            self.call(self.client.remove_object, self.bucket, name)
            left = self.exists(key)
        elif version_id:
            self.call(self.client.remove_object, self.bucket, name, version_id=version_id)
            left = version_id in self._version_ids(name)
        else:
            for vid in self._version_ids(name):
                self.call(self.client.remove_object, self.bucket, name, version_id=vid)
            left = bool(self._version_ids(name))
        if left:
            raise environment(f"{key} is still in {self.url} after it was deleted (the server "
                              "answered the delete but kept the object).")

    def _version_ids(self, name: str) -> list[str]:
        return [o.version_id for o in self.call(lambda: list(self.client.list_objects(
            self.bucket, name, include_version=True))) if o.object_name == name and o.version_id]

    def versions(self, key: str) -> list[Version]:
        name = self._key(key)
        objs = self.call(lambda: list(self.client.list_objects(
            self.bucket, name, include_version=True)))
        return [Version(key, o.version_id or "null", o.size or 0,
                        o.last_modified.strftime("%Y-%m-%dT%H:%M:%SZ") if o.last_modified else "",
                        bool(o.is_latest == "true" or o.is_latest is True))
                for o in objs if o.object_name == name and not o.is_delete_marker]

    def promote(self, key: str, version_id: str) -> Written:
        from minio.commonconfig import CopySource

        name = self._key(key)
        result = self.call(self.client.copy_object, self.bucket, name,
                            CopySource(self.bucket, name, version_id=version_id))
        stat = self.call(self.client.stat_object, self.bucket, name)
        return Written(key, stat.size or 0, "", result.version_id)

    def _bucket_locked(self) -> bool:
        """Whether the bucket was created with Object Lock (asked once)."""
        if self._locked is None:
            from minio.error import S3Error

            try:
                self.client.get_object_lock_config(self.bucket)
                self._locked = True
            except S3Error:
                self._locked = False
            except Exception as exc:
                raise self._err(exc) from None
        return self._locked

    def retained_until(self, key: str, version_id: str | None = None) -> datetime | None:
        from minio.error import S3Error

        if not self._bucket_locked():
            return None  # no object of a bucket without Object Lock can be under retention
        try:
            # HEAD carries the retention (x-amz-object-lock-*) on S3, MinIO and moto alike.
            stat = self.client.stat_object(self.bucket, self._key(key), version_id=version_id)
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchVersion", "NoSuchObject", "ResourceNotFound"):
                return None
            raise self._err(exc) from None
        except Exception as exc:
            raise self._err(exc) from None
        meta = {k.lower(): v for k, v in (stat.metadata or {}).items()}
        raw = meta.get("x-amz-object-lock-retain-until-date")
        if not raw:
            return None
        try:
            until = datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
        except ValueError:
            return None
        return until if until > datetime.now(timezone.utc) else None

    def properties(self) -> Properties:
        return Properties("s3", versioned=True, bucket=self.bucket, prefix=self.prefix,
                          endpoint=self.cfg.endpoint, secure=self.cfg.secure, region=self.cfg.region,
                          access_key=self._access, secret_key=self._secret)

    def health(self) -> Health:
        # Read-only: doctor reports, it does not switch versioning on itself.
        if not self.call(self.client.bucket_exists, self.bucket):
            return Health(False, f"bucket {self.bucket} does not exist",
                          fix=f"taydash store init (or: aws s3api create-bucket --bucket "
                              f"{self.bucket} && aws s3api put-bucket-versioning --bucket "
                              f"{self.bucket} --versioning-configuration Status=Enabled; or: mc mb "
                              f"ALIAS/{self.bucket} && mc version enable ALIAS/{self.bucket})")
        status = self.call(self.client.get_bucket_versioning, self.bucket).status
        from minio.error import S3Error

        locked = self._bucket_locked()
        try:
            sse = self.client.get_bucket_encryption(self.bucket)
            rule = sse.rule if sse is not None else None
            encryption = str(rule.sse_algorithm) if rule is not None else ""
        except S3Error:
            encryption = ""  # ServerSideEncryptionConfigurationNotFoundError
        return Health(True, self.url, versioning=status or "Off", object_lock=locked,
                      encryption=encryption)

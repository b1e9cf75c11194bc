"""One update pass over the configured databases, the way freshclam 1.x does it.

For each database: read the first 512 bytes of ``NAME.cvd`` from the mirror (a Range
request with If-Modified-Since) to learn the remote version; if it is newer, fetch
``NAME-V.cdiff`` for every missing version and apply them to the local copy (the result is
kept as ``NAME.cld``), or, without scripted updates or when any patch fails, fetch the whole
``NAME.cvd``. Every result is verified (MD5, RSA signature, ``.info`` index and its
signature via cvd.py), test-loaded, and only then installed atomically (store.py).

Detached signatures (signatures.md §7.4): when CVDCertsDirectory names the trusted CA
certificates, ``NAME-V.cvd.sign`` / ``NAME-V.cdiff.sign`` is fetched next to each download.
A ``.sign`` whose applicable lines (those for our FLEVEL) all fail rejects the file (stricter
than §7.4's fall-back: a mirror serving a bad ``.sign`` is not trusted for that file); an
absent ``.sign``, or one with no line for our FLEVEL, leaves the legacy checks alone in
charge. The legacy checks always run as well, even after a good ``.sign``: the engine's
loader requires them, so a file without them could not be installed anyway. Without
CVDCertsDirectory no ``.sign`` is requested.

Unsigned ``.cvd`` files are refused from every mirror, PrivateMirror included: the engine's
loader (like clamd's) refuses them too, so installing one would only break the daemon. A
private mirror serves the official signed files (as cvdupdate mirrors them), or files the
user signed with ``vigil sigtool --build/--diff --private-key``: those verify only when the
public key is in VigilTrustedKeysDirectory (a Vigil-only option, for the updater here and
for the loader in vigild and ``vigil scan``), which is also used for the test load.
"""

from __future__ import annotations

import email.utils
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from vigil.config.freshclam import FreshclamConfig
from vigil.engine.signatures.cdiff import apply_cdiff as patch_members
from vigil.engine.signatures.cdiff import parse_cdiff, verify_cdiff
from vigil.engine.signatures.cvd import (
    HEADER_SIZE,
    CvdHeader,
    TrustedKey,
    load_trusted_keys,
    parse_cvd_header,
    read_cvd,
)
from vigil.engine.signatures.model import FLEVEL
from vigil.engine.signatures.sign import check_sign_file, load_trusted, sign_name
from vigil.errors import ConfigError, DatabaseError
from vigil.update import mirror as mirror_module
from vigil.update import store
from vigil.update.errors import (
    MirrorNotSynced,
    NetworkError,
    RateLimited,
    RemoteError,
    UpdateError,
    VerifyError,
)
from vigil.update.mirror import HttpSettings, Response, fetch, mirror_url

__all__ = ["Outcome", "Updater", "apply_cdiff", "database_names"]

log = logging.getLogger(__name__)

Reporter = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to one database: ``how`` is "up-to-date", "cdiff" or "cvd"."""

    name: str
    how: str
    version: int
    header: CvdHeader | None = None


def database_names(config: FreshclamConfig) -> list[str]:
    """main, daily, bytecode (unless Bytecode no), plus ExtraDatabase minus ExcludeDatabase."""
    names = ["main", "daily"] + (["bytecode"] if config.bytecode else [])
    names += [n for n in config.extra_database if n not in names]
    return [n for n in names if n not in config.exclude_database]


def apply_cdiff(
    members: dict[str, bytes],
    data: bytes,
    origin: str,
    *,
    version: int,
    verify: bool,
    keys: Sequence[TrustedKey] = (),
) -> dict[str, bytes]:
    """Check one downloaded ``.cdiff`` (version, signature) and apply it; VerifyError if not."""
    try:
        cdiff = parse_cdiff(data, origin)
        if cdiff.version != version:
            raise VerifyError(f"{origin}: the file is for version {cdiff.version}, not {version}")
        if verify and not verify_cdiff(cdiff, keys):
            raise VerifyError(f"{origin}: digital signature verification failed")
        return patch_members(members, cdiff.script, origin)
    except DatabaseError as exc:
        raise VerifyError(str(exc)) from None


class Updater:
    """Runs update passes for one configuration; every failure is an UpdateError."""

    def __init__(
        self,
        config: FreshclamConfig,
        datadir: Path,
        *,
        report: Reporter = print,
        clock: Callable[[], float] = time.time,
        flevel: int = FLEVEL,
    ) -> None:
        """ConfigError when CVDCertsDirectory holds no readable CA certificate."""
        self.config = config
        self.datadir = datadir
        self.verify = True  # see the module docstring: never relaxed
        self.report = report
        self.clock = clock
        self.flevel = flevel  # which .sign lines apply
        self.trusted: list[x509.Certificate] | None = None
        if config.cvd_certs_directory:
            try:
                self.trusted = load_trusted(config.cvd_certs_directory)
            except DatabaseError as exc:
                where = config.source or "freshclam.conf"
                raise ConfigError(where, 0, "CVDCertsDirectory", str(exc)) from None
        # Vigil only: the user's own signing keys, for a PrivateMirror of self-built files.
        self.keys_path = config.vigil_trusted_keys_directory
        self.keys: tuple[TrustedKey, ...] = ()
        if self.keys_path:
            try:
                self.keys = load_trusted_keys(self.keys_path)
            except DatabaseError as exc:
                where = config.source or "freshclam.conf"
                raise ConfigError(where, 0, "VigilTrustedKeysDirectory", str(exc)) from None
        self.mirrors = [mirror_url(m) for m in config.mirrors()]
        self.http = HttpSettings(
            connect_timeout=float(config.connect_timeout) or None,
            receive_timeout=float(config.receive_timeout) or None,
            proxy_host=config.http_proxy_server,
            proxy_port=config.http_proxy_port,
            proxy_user=config.http_proxy_username,
            proxy_password=config.http_proxy_password,
            user_agent=config.http_user_agent or "Vigil-Update",
            max_size=mirror_module.MAX_DOWNLOAD,
        )

    def update(self, names: list[str], *, custom: bool = True) -> list[Outcome]:
        """Update ``names``, then (with ``custom``) each DatabaseCustomURL; stops at a failure."""
        with store.locked(self.datadir):
            self._check_cool_down()
            outcomes = [self.update_one(name) for name in names]
            if custom:
                outcomes += [self.update_custom(url) for url in self.config.database_custom_url]
            return outcomes

    def update_custom(self, url: str) -> Outcome:
        """Download one DatabaseCustomURL file if it changed; containers are fully verified."""
        filename = url.rstrip("/").rsplit("/", 1)[-1]
        if not filename or filename.startswith(".") or "\\" in filename:
            raise RemoteError(f"{url}: cannot tell the database file name from the URL")
        target = self.datadir / filename
        headers = {}
        if target.exists():
            mtime = target.stat().st_mtime
            headers["If-Modified-Since"] = email.utils.formatdate(mtime, usegmt=True)
        resp = self._get(url, headers=headers)
        if resp.status == 304:
            self.report(f"{filename} is up-to-date")
            return Outcome(filename, "up-to-date", 0)
        if resp.status == 404:
            raise RemoteError(f"{url}: not found (HTTP 404)")
        if _looks_like_html(resp.body):
            raise RemoteError(f"{url}: the server answered with HTML, not a database")
        if target.exists() and target.read_bytes() == resp.body:
            self.report(f"{filename} is up-to-date")
            return Outcome(filename, "up-to-date", 0)
        version = 0
        if filename.lower().endswith((".cvd", ".cld", ".cud")):
            version = self._verified(resp.body, filename, 0, exact=False).version
        store.install(
            self.datadir,
            filename,
            resp.body,
            test_load=self.config.test_databases,
            trusted_keys=self.keys_path,
        )
        self.report(f"{filename} updated from {url}")
        return Outcome(filename, "custom", version)

    def update_one(self, name: str) -> Outcome:
        """Bring one database up to the mirror's version, or leave it as it is."""
        local = store.installed(self.datadir, name)
        remote, mirror = self._remote_header(name, local)
        if remote is None:
            assert local is not None  # 304 is only possible when we sent If-Modified-Since
            return self._up_to_date(local)
        if local is not None and remote.version == local.header.version:
            return self._up_to_date(local)
        if local is not None and remote.version < local.header.version:
            raise MirrorNotSynced(
                f"{name}: mirror {mirror} offers version {remote.version}, older than the "
                f"local version {local.header.version}"
            )
        if local is not None and self.config.scripted_updates:
            try:
                return self._incremental(name, local, remote.version, mirror)
            except (RemoteError, VerifyError) as exc:
                self.report(f"WARNING: {exc}")
                self.report(f"WARNING: Incremental update failed, trying to download {name}.cvd")
        return self._whole(name, remote.version, mirror)

    def _up_to_date(self, local: store.Installed) -> Outcome:
        h = local.header
        self.report(
            f"{local.path.name} database is up-to-date (version: {h.version}, sigs: {h.sigs}, "
            f"f-level: {h.flevel}, builder: {h.builder})"
        )
        name = local.path.name.rsplit(".", 1)[0]
        return Outcome(name, "up-to-date", h.version, h)

    def _check_cool_down(self) -> None:
        until = store.cool_down_until(self.datadir)
        if until > self.clock():
            stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(until))
            raise RateLimited(f"the mirror asked us to wait: on cool-down until {stamp}", until)

    def _get(
        self, url: str, *, headers: dict[str, str] | None = None, limit: int | None = None
    ) -> Response:
        """One download with MaxAttempts tries for network failures; 429 starts a cool-down."""
        attempts = max(1, self.config.max_attempts)
        for attempt in range(1, attempts + 1):
            try:
                return fetch(url, self.http, headers=headers, limit=limit, now=self.clock())
            except RateLimited as exc:
                store.set_cool_down(self.datadir, exc.until)
                raise
            except NetworkError as exc:
                if attempt == attempts:
                    raise
                log.debug("attempt %d of %d failed: %s", attempt, attempts, exc)
                time.sleep(min(2.0**attempt, 30.0))  # never hammer a failing mirror
        raise AssertionError("unreachable")

    def _remote_header(
        self, name: str, local: store.Installed | None
    ) -> tuple[CvdHeader | None, str]:
        """The mirror's header for ``name.cvd``, or None when it is not modified (304)."""
        headers = {"Range": f"bytes=0-{HEADER_SIZE - 1}", "Cache-Control": "no-cache"}
        if local is not None and local.header.build_secs:
            headers["If-Modified-Since"] = email.utils.formatdate(
                local.header.build_secs, usegmt=True
            )
        failure: UpdateError | None = None
        for mirror in self.mirrors:
            url = f"{mirror}/{name}.cvd"
            try:
                resp = self._get(url, headers=headers, limit=HEADER_SIZE)
            except NetworkError as exc:
                if isinstance(exc, RateLimited):
                    raise
                failure = exc
                continue
            if resp.status == 304:
                return None, mirror
            if resp.status == 404:
                raise RemoteError(f"{url}: not found on the mirror (HTTP 404)")
            return _header_or_garbage(resp.body, url), mirror
        assert failure is not None
        raise failure

    def _incremental(self, name: str, local: store.Installed, target: int, mirror: str) -> Outcome:
        members = store.read_members(local.path, self.keys_path)
        for version in range(local.header.version + 1, target + 1):
            url = f"{mirror}/{name}-{version}.cdiff"
            resp = self._get(url)
            if resp.status == 404:
                raise RemoteError(f"{url}: not found on the mirror (HTTP 404)")
            if _looks_like_html(resp.body):
                raise RemoteError(f"{url}: the mirror answered with HTML, not a CDIFF")
            origin = f"{name}-{version}.cdiff"
            self._check_sign(resp.body, mirror, sign_name(name, version, "cdiff"))
            members = apply_cdiff(
                members, resp.body, origin, version=version, verify=self.verify, keys=self.keys
            )
        data = store.build_cld(name, members, compress=self.config.compress_local_database)
        header = self._verified(data, f"{name}.cld", target, exact=True)
        store.install(
            self.datadir,
            f"{name}.cld",
            data,
            test_load=self.config.test_databases,
            stale=(f"{name}.cvd",),
            trusted_keys=self.keys_path,
        )
        self._updated(f"{name}.cld", header)
        return Outcome(name, "cdiff", header.version, header)

    def _whole(self, name: str, target: int, mirror: str) -> Outcome:
        url = f"{mirror}/{name}.cvd"
        resp = self._get(url)
        if resp.status == 404:
            raise RemoteError(f"{url}: not found on the mirror (HTTP 404)")
        remote = _header_or_garbage(resp.body, url)
        self._check_sign(resp.body, mirror, sign_name(name, remote.version, "cvd"))
        header = self._verified(resp.body, f"{name}.cvd", target, exact=False)
        store.install(
            self.datadir,
            f"{name}.cvd",
            resp.body,
            test_load=self.config.test_databases,
            stale=(f"{name}.cld",),
            trusted_keys=self.keys_path,
        )
        self._updated(f"{name}.cvd", header)
        return Outcome(name, "cvd", header.version, header)

    def _check_sign(self, data: bytes, mirror: str, filename: str) -> bool:
        """True when ``filename`` from the mirror verifies ``data``; False when it is absent
        or has no line for our FLEVEL; VerifyError when it fails."""
        if self.trusted is None:
            return False
        resp = self._get(f"{mirror}/{filename}")
        if resp.status == 404 or _looks_like_html(resp.body):
            log.debug("%s: not on the mirror, using the legacy signature", filename)
            return False
        try:
            ok = check_sign_file(data, resp.body, self.trusted, filename, flevel=self.flevel)
        except DatabaseError as exc:
            raise VerifyError(f"detached signature check failed: {exc}") from None
        if not ok:
            log.debug("%s: no signature for FLEVEL %d, using the legacy one", filename, self.flevel)
        return ok

    def _verified(self, data: bytes, origin: str, target: int, *, exact: bool) -> CvdHeader:
        """Full container check; the version must be the advertised one (or newer for a CVD)."""
        try:
            header = read_cvd(data, origin, verify=self.verify, trusted_keys=self.keys).header
        except DatabaseError as exc:
            raise VerifyError(f"verification failed: {exc}") from None
        if header.version < target or (exact and header.version != target):
            raise MirrorNotSynced(
                f"{origin}: mirror advertised version {target} but the file is {header.version}"
            )
        return header

    def _updated(self, filename: str, h: CvdHeader) -> None:
        self.report(
            f"{filename} updated (version: {h.version}, sigs: {h.sigs}, f-level: {h.flevel}, "
            f"builder: {h.builder})"
        )


def _looks_like_html(data: bytes) -> bool:
    head = data[:512].lstrip().lower()
    return head.startswith((b"<!doctype", b"<html", b"<?xml", b"<head", b"<body"))


def _header_or_garbage(data: bytes, url: str) -> CvdHeader:
    """The CVD header at the start of ``data``; HTML or anything else is a RemoteError."""
    if _looks_like_html(data):
        raise RemoteError(f"{url}: the mirror answered with HTML, not a CVD")
    try:
        return parse_cvd_header(data[:HEADER_SIZE], url)
    except DatabaseError as exc:
        raise RemoteError(
            f"{url}: the mirror answered with something that is not a CVD ({exc})"
        ) from None

"""A server process's long-lived objects, and the embedded default's files on disk."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import replace

from swarm_oauth.admin_token import ADMIN_TOKEN_FILENAME, SharedSecret, resolve_admin_token
from swarm_oauth.clients import ClientService
from swarm_oauth.clients.cache import ClientCache
from swarm_oauth.config import ServerSettings
from swarm_oauth.keys import (
    KeyRing,
    KeyRotator,
    MasterKey,
    MasterKeyError,
    RotationPolicy,
    check_master_key,
    ensure_signing_key,
)
from swarm_oauth.keys.timeline import KeyTimeline
from swarm_oauth.secretfiles import (
    SecretConfigError,
    create_once,
    make_private_dir,
    read_secret_file,
    secret_from_env,
)
from swarm_oauth.store import ChangeBatch, RevocationRecord, Store, StoreError, open_store
from swarm_oauth.tokens import RevocationList, TokenIssuer, TokenVerifier
from swarm_oauth.tokens.revocation import client_revocation
from swarm_oauth.watcher import ChangeWatcher

log = logging.getLogger("swarm_oauth.runtime")

MASTER_KEY_FILENAME = "master.key"
ENV_MASTER_KEY = "SWARM_OAUTH_MASTER_KEY"


# What ``Runtime.open`` raises when the server cannot start: a secret or the master key
# that cannot be read, a store that cannot be reached, a data dir that cannot be made.
STARTUP_ERRORS = (SecretConfigError, MasterKeyError, StoreError, OSError)


def load_master_key(settings: ServerSettings, *, create: bool = True) -> MasterKey:
    """The operator's master key, else ``DATA_DIR/master.key`` (created on first start
    when ``create``; commands that only add keys must never invent a master key)."""
    return MasterKey.from_text(_master_key_text(settings, create))


def _master_key_text(settings: ServerSettings, create: bool) -> str:
    if settings.master_key_file is not None:
        return read_secret_file(settings.master_key_file)
    configured = settings.master_key or secret_from_env(ENV_MASTER_KEY)
    if configured is not None:
        return configured
    path = settings.data_dir / MASTER_KEY_FILENAME
    if not create and not path.exists():
        raise MasterKeyError(
            f"no master key: pass --master-key-file (or SWARM_OAUTH_MASTER_KEY_FILE); "
            f"{path} does not exist"
        )
    if create and create_once(path, MasterKey.generate_text()):
        log.warning(
            "generated a master key in the data dir; in production pass "
            "SWARM_OAUTH_MASTER_KEY_FILE (a Docker secret) so that the key that encrypts "
            "the signing keys is not stored beside them",
            extra={"path": str(path)},
        )
    return read_secret_file(path)


def _admin_token_text(settings: ServerSettings) -> str:
    return settings.admin_token or resolve_admin_token(
        settings.admin_token_file, settings.data_dir / ADMIN_TOKEN_FILENAME, create=True
    )


def with_secrets_read(settings: ServerSettings) -> ServerSettings:
    """``settings`` holding, as values, the master key and admin token its role needs,
    read once from wherever they are configured. Worker processes, started and restarted
    each at its own time, then all use the ones the server started with, even if a file
    changed since."""
    master_key = _master_key_text(settings, True) if settings.serves_tokens else None
    admin_token = _admin_token_text(settings) if settings.serves_clients else None
    return replace(
        settings,
        master_key=master_key,
        master_key_file=None,
        admin_token=admin_token,
        admin_token_file=None,
    )


class Runtime:
    """Store, keys, caches and services shared by the routes of one server process."""

    def __init__(self, settings: ServerSettings, store: Store, master: MasterKey | None) -> None:
        self.settings = settings
        self.store = store
        # None in the clients role: it never signs, so it never decrypts a signing key.
        self.master = master
        # The watcher reads its cursor before the keys are loaded, so a key change that
        # commits in between is applied at its first poll instead of being lost.
        self.watcher = ChangeWatcher(store, self._apply_changes)
        self.keyring = self._load_keyring()
        self.rotator = self._key_rotator()
        # Keys activate and retire by the clock, without a change to apply: every round
        # of the watcher looks, so the log says when the signing key changed.
        self.key_timeline = KeyTimeline()
        self._observe_keys()
        self.revocations = self._load_revocations()
        self._revocations_lock = threading.Lock()
        # Revocations this process took since the watcher began its last load: a load
        # that began before one was written does not have it, and must not drop it.
        self._noted: list[RevocationRecord] = []
        self.client_cache = ClientCache(store)
        self.clients = ClientService(
            store,
            on_change=self.client_cache.forget,
            cutoff=client_revocation,
            on_revoked=self.note_revocation,
        )
        self.issuer = TokenIssuer(
            settings.issuer_url, lambda: self.keyring, lifetime=settings.token_lifetime
        )
        self.verifier = TokenVerifier(
            settings.issuer_url, lambda: self.keyring, lambda: self.revocations
        )
        self.default_audiences = (settings.issuer_url,)
        self.admin_token = (
            SharedSecret.of(_admin_token_text(settings)) if settings.serves_clients else None
        )

    @classmethod
    def open(cls, settings: ServerSettings) -> Runtime:
        """Prepare the data dir, store and keys (idempotent), and build the runtime."""
        make_private_dir(settings.data_dir)
        store = open_store(settings.database_url, settings.data_dir)
        try:
            store.migrate()
            master = None
            if settings.serves_tokens:
                master = load_master_key(settings)
                # At start a key that does not open is the operator's mistake: refuse to
                # run. Later (a key added under another master key) it is left out and
                # logged.
                check_master_key(store, master)
                if ensure_signing_key(
                    store, master, settings.signing_alg, settings.issuer_url, time.time()
                ):
                    log.info("created a signing key", extra={"alg": settings.signing_alg})
            return cls(settings, store, master)
        except BaseException:
            # Its pool (and the pool's threads) would outlive a failed start, once per
            # attempt of a worker that waits for its store.
            store.close()
            raise

    def _key_rotator(self) -> KeyRotator | None:
        settings = self.settings
        if self.master is None or settings.key_rotation_interval <= 0:
            return None
        policy = RotationPolicy(
            interval=settings.key_rotation_interval,
            publish_ahead=settings.key_publish_ahead,
            alg=settings.signing_alg,
            issuer=settings.issuer_url,
            token_lifetime=settings.token_lifetime,
            unpublish_margin=settings.key_unpublish_margin,
        )
        return KeyRotator(self.store, self.master, policy)

    def start(self) -> None:
        """Start the background work: following changes and, if on, rotating keys."""
        self.watcher.start()
        if self.rotator is not None:
            self.rotator.start()

    def _load_keyring(self) -> KeyRing:
        return KeyRing() if self.master is None else KeyRing.load(self.store, self.master)

    def _load_revocations(self) -> RevocationList:
        # Only the roles that verify tokens consult it.
        if not self.settings.serves_tokens:
            return RevocationList()
        return RevocationList(self.store.list_revocations(time.time()))

    def _apply_changes(self, batch: ChangeBatch) -> None:
        self.client_cache.apply(batch)
        kinds = {change.kind for change in batch.changes}
        if not batch.complete or "key" in kinds:
            self.keyring = self._load_keyring()
        if not batch.complete or "revocation" in kinds:
            with self._revocations_lock:
                self._noted.clear()
            loaded = self._load_revocations()
            with self._revocations_lock:
                self.revocations = loaded.with_records(self._noted)
        self._observe_keys()

    def note_revocation(self, record: RevocationRecord) -> None:
        """Apply a revocation this process just stored, ahead of the change log."""
        # Under the lock, so that a list the watcher loads meanwhile is not overwritten
        # by one made from the list before it.
        with self._revocations_lock:
            self.revocations = self.revocations.with_record(record)
            self._noted.append(record)

    def _observe_keys(self) -> None:
        if self.master is not None:
            self.key_timeline.observe((key.record for key in self.keyring.keys), time.time())

    def ready(self) -> tuple[bool, str]:
        """Whether this process can serve: store reachable, its changes followed, and
        (for roles that sign) a signing key loaded."""
        try:
            self.store.ping()
        except Exception as exc:  # any failure means not ready; the reason is shown
            return False, f"store unreachable: {type(exc).__name__}"
        if not self.settings.serves_tokens:
            return True, "ready"
        if not self.watcher.fresh():
            return False, "the store's change log is not being followed"
        if self.keyring.signing_key(time.time()) is None:
            return False, "no usable signing key (see the log)"
        return True, "ready"

    def close(self) -> None:
        """Stop the background work and release the store."""
        if self.rotator is not None:
            self.rotator.close()
        self.watcher.close()
        self.store.close()

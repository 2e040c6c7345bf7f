"""The IdP's key file: private, created once under concurrent starts, rotated with
pre-publication, reloaded by running workers."""

from __future__ import annotations

import json
import stat
import threading
from pathlib import Path

from ajwt_core.idp.keystore import ReloadingKeys, load_signing_keys, rotate_key_file
from ajwt_core.keys import SigningKeySet


def test_key_file_is_created_private(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    keys = load_signing_keys(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_signing_keys(path).active.kid == keys.active.kid


def test_concurrent_first_starts_agree_on_one_key(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    kids: list[str] = []
    barrier = threading.Barrier(8)

    def start() -> None:
        barrier.wait()
        kids.append(load_signing_keys(path).active.kid)

    threads = [threading.Thread(target=start) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(kids)) == 1
    assert not [p for p in tmp_path.iterdir() if p.name != "keys.json"]  # no temp files left


def test_rotation_pre_publishes_then_activates(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    old = load_signing_keys(path).active.kid
    new = rotate_key_file(path, activate_after=3600)
    keys = load_signing_keys(path)
    assert keys.active.kid == old  # not active yet
    assert {k["kid"] for k in keys.jwks()["keys"]} == {old, new}  # but published
    clock_later = SigningKeySet.from_json(path.read_text())
    clock_later._clock = lambda: 2**40  # an hour has passed
    assert clock_later.active.kid == new


def test_running_workers_reload_a_rotated_file(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    now = [0.0]
    reloading = ReloadingKeys(path, interval=1.0, clock=lambda: now[0])
    before = reloading().active.kid
    new = rotate_key_file(path, activate_after=0)
    assert reloading().active.kid == before  # checked at most once per interval
    now[0] = 2.0
    assert reloading().active.kid == new


def test_first_file_format_still_loads(tmp_path: Path) -> None:
    keys = SigningKeySet.generate()
    legacy = {"keys": [entry["pem"] for entry in json.loads(keys.to_json())["keys"]]}
    path = tmp_path / "old.json"
    path.write_text(json.dumps(legacy))
    assert load_signing_keys(path).active.kid == keys.active.kid

"""Connection profiles survive concurrent writers: threads and processes, 60 saves, 60 kept."""

from __future__ import annotations

import json
import multiprocessing
import threading
from pathlib import Path

import pytest

from postroom import Basic, ConfigError, EmailServer, Variable
from postroom.profiles import ProfileStore


def _config(number: int) -> EmailServer:
    return EmailServer(
        host=f"imap{number}.example.test", auth=Basic(username=Variable("USER"), password=Variable("PASSWORD"))
    )


def _save_range(path: str, start: int, count: int) -> None:
    store = ProfileStore(Path(path))
    for number in range(start, start + count):
        store.save(f"box-{number}", _config(number))


def test_sixty_saves_from_threads_are_all_kept(tmp_path: Path) -> None:
    path = tmp_path / "profiles.json"
    threads = [threading.Thread(target=_save_range, args=(str(path), n * 10, 10)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert ProfileStore(path).names() == sorted(f"box-{n}" for n in range(60))
    assert not list(tmp_path.glob("*.tmp"))  # no temp file left behind


def test_sixty_saves_from_processes_are_all_kept(tmp_path: Path) -> None:
    path = tmp_path / "profiles.json"
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_save_range, args=(str(path), n * 10, 10)) for n in range(6)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    store = ProfileStore(path)
    assert store.names() == sorted(f"box-{n}" for n in range(60))
    assert store.load("box-42").host == "imap42.example.test"  # type: ignore[attr-defined]


def test_a_damaged_profiles_file_is_named_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "profiles.json"
    path.write_text('{"box": {"settings": ')
    with pytest.raises(ConfigError, match="not a readable profiles file") as raised:
        ProfileStore(path).save("other", _config(1))
    assert raised.value.field == "profiles"
    assert path.read_text() == '{"box": {"settings": '
    json.dumps(raised.value.to_dict())

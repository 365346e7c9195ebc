"""Local storage: the embedded default behind the Storage protocol."""

from __future__ import annotations

import pytest

from backend.core.errors import UnusableInput
from backend.core.settings import get_settings, reset_settings_cache
from backend.storage.base import ObjectNotFound, Storage
from backend.storage.local import LocalStorage
from backend.storage.registry import get_storage, register_storage


def test_local_storage_round_trip(tmp_path):
    storage = LocalStorage(tmp_path)
    assert isinstance(storage, Storage)
    storage.put("job/1-A.pdf", b"first", content_type="application/pdf")
    storage.put("job/1-A.pdf", b"second", content_type="application/pdf")  # same key overwrites
    assert storage.exists("job/1-A.pdf") and storage.get("job/1-A.pdf") == b"second"
    with storage.open_stream("job/1-A.pdf") as stream:
        assert stream.read(3) == b"sec"
    assert storage.url("job/1-A.pdf") == (tmp_path / "job" / "1-A.pdf").resolve().as_uri()
    assert not [p for p in (tmp_path / "job").iterdir() if p.name.startswith(".part")]
    storage.delete("job/1-A.pdf")
    storage.delete("job/1-A.pdf")  # absent is fine
    assert not storage.exists("job/1-A.pdf")
    with pytest.raises(ObjectNotFound):
        storage.get("job/1-A.pdf")
    with pytest.raises(ObjectNotFound):
        storage.open_stream("job/1-A.pdf")


@pytest.mark.parametrize("key", ["../etc/passwd", "/abs.pdf", "a/../../b", "a//b", "", "a\\b", "x y"])
def test_keys_cannot_escape_the_root(tmp_path, key):
    with pytest.raises(UnusableInput):
        LocalStorage(tmp_path).put(key, b"x")


def test_get_storage_defaults_and_settings(mani_env, tmp_path, monkeypatch):
    storage = get_storage(settings=get_settings())
    assert isinstance(storage, LocalStorage) and storage.root == get_settings().data_dir / "certificates"
    monkeypatch.setenv("MANI_STORAGE_DIR", str(tmp_path / "files"))
    monkeypatch.setenv("MANI_PUBLIC_BASE_URL", "https://files.example.org/certs/")
    reset_settings_cache()
    storage = get_storage(settings=get_settings())
    storage.put("j/u1.pdf", b"x")
    assert storage.url("j/u1.pdf") == "https://files.example.org/certs/j/u1.pdf"
    assert (tmp_path / "files" / "j" / "u1.pdf").read_bytes() == b"x"
    with pytest.raises(UnusableInput, match="storage backend 'ftp' is not one of"):
        get_storage(settings=get_settings(), company_settings={"storage": "ftp"})


def test_other_backends_register_by_name(mani_env, tmp_path):
    made = []

    def factory(*, settings, company_settings):
        made.append(company_settings.get("bucket"))
        return LocalStorage(tmp_path)

    register_storage("memorytest", factory)
    assert isinstance(get_storage(settings=get_settings(), company_settings={"storage": "memorytest", "bucket": "b"}), LocalStorage)
    assert made == ["b"]

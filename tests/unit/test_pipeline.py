import hashlib
import io
import threading

import pytest

from backup_app.adapters.local import LocalStorage
from backup_app.adapters.pipeline import GrowingFileReader, PipelineAborted, Upload, stream_to_file


def test_reader_gets_whole_parts_before_the_writer_finishes(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"a" * 10)
    reader = GrowingFileReader(path)
    reader.advance(10)

    assert reader.read(4) == b"aaaa"
    got = []
    thread = threading.Thread(target=lambda: got.append(reader.read(8)))
    thread.start()
    thread.join(0.2)
    assert thread.is_alive(), "only 6 bytes written: the reader waits for a whole part"
    with open(path, "ab") as f:
        f.write(b"b" * 2)
    reader.advance(2)
    thread.join(30)
    assert not thread.is_alive() and got == [b"aaaaaabb"]
    reader.finish()
    assert reader.read(8) == b""
    reader.close()


def test_reader_raises_once_aborted(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"")
    reader = GrowingFileReader(path)
    reader.abort()
    with pytest.raises(PipelineAborted):
        reader.read(1)
    reader.close()


def test_stream_feeds_hash_file_and_upload(tmp_path):
    data = bytes(range(256)) * 20000  # ~5 MB: several chunks
    local = LocalStorage(tmp_path)
    partial = local.open_partial("x.dump")
    uploaded = []
    upload = Upload(partial.path, lambda reader: uploaded.append(b"".join(iter(lambda: reader.read(777_777), b""))))

    result = stream_to_file(io.BytesIO(data), partial, [upload])
    outcome = upload.finish()
    partial.commit()

    assert result.size_bytes == len(data)
    assert result.sha256 == hashlib.sha256(data).hexdigest()
    assert (tmp_path / "x.dump").read_bytes() == data
    assert outcome.error is None and uploaded == [data]
    assert [p.name for p in tmp_path.iterdir()] == ["x.dump"]


def test_upload_failure_is_recorded_not_raised(tmp_path):
    local = LocalStorage(tmp_path)
    partial = local.open_partial("x.dump")

    def broken(reader):
        reader.read(10)
        raise OSError("connection reset")
    upload = Upload(partial.path, broken)
    stream_to_file(io.BytesIO(b"z" * 100_000), partial, [upload])

    assert str(upload.finish().error) == "connection reset"
    partial.discard()

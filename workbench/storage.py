"""Filesystem operations on lake URIs (file://, hdfs://, s3a://, ...) through Hadoop's FileSystem,
so the same code runs on a laptop and against a cluster. Falls back to the local filesystem for
file:// URIs when no JVM is reachable (Spark Connect)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from urllib.parse import urlparse

__all__ = [
    "atomic_write_text",
    "atomic_write_bytes",
    "exists",
    "delete",
    "rename",
    "list_dir",
    "is_local",
    "local_path",
]


def is_local(uri: str) -> bool:
    return urlparse(uri).scheme in ("", "file")


def local_path(uri: str) -> Path:
    return Path(urlparse(uri).path) if urlparse(uri).scheme == "file" else Path(uri)


def _hadoop(spark, uri: str):
    jvm = spark.sparkContext._jvm
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    path = jvm.org.apache.hadoop.fs.Path(uri)
    return path.getFileSystem(conf), path, jvm


def _use_local(spark, uri: str) -> bool:
    return spark is None or (is_local(uri) and not hasattr(spark, "sparkContext")) or _is_connect(spark)


def _is_connect(spark) -> bool:
    return type(spark).__module__.startswith("pyspark.sql.connect")


def exists(uri: str, spark=None) -> bool:
    if _use_local(spark, uri):
        return local_path(uri).exists()
    fs, path, _ = _hadoop(spark, uri)
    return bool(fs.exists(path))


def delete(uri: str, spark=None) -> None:
    if _use_local(spark, uri):
        p = local_path(uri)
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
        return
    fs, path, _ = _hadoop(spark, uri)
    fs.delete(path, True)


def rename(src: str, dst: str, spark=None) -> None:
    """Move src to dst (atomic on HDFS and local filesystems; dst must not exist)."""
    if _use_local(spark, src):
        local_path(src).rename(local_path(dst))
        return
    fs, src_path, jvm = _hadoop(spark, src)
    if not fs.rename(src_path, jvm.org.apache.hadoop.fs.Path(dst)):
        raise OSError(f"could not rename {src} to {dst}")


def list_dir(uri: str, spark=None) -> list[str]:
    if _use_local(spark, uri):
        p = local_path(uri)
        return sorted(c.name for c in p.iterdir()) if p.is_dir() else []
    fs, path, _ = _hadoop(spark, uri)
    if not fs.exists(path):
        return []
    return sorted(status.getPath().getName() for status in fs.listStatus(path))


def _umask() -> int:
    """The process umask, read without changing it (os.umask can only be read by setting it)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file beside `path`, fsync, then rename: readers see the old or the new file, never half.
    The file gets the usual permissions (0666 minus the umask), not mkstemp's private 0600."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))

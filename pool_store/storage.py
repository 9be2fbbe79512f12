"""TinyDB storage that never leaves half a file behind.

TinyDB's JSONStorage rewrites the file in place: a crash mid-write leaves a truncated file.
This storage writes a temporary file beside it, fsyncs, and renames it over the old one,
so a reader sees either the old content or the new, never a mix.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

from tinydb.storages import Storage


class AtomicJSONStorage(Storage):
    def __init__(self, path: str, **kwargs: Any) -> None:
        self.path = os.path.abspath(path)
        directory = os.path.dirname(self.path)
        os.makedirs(directory, exist_ok=True)
        self._kwargs = kwargs
        self._tmp_prefix = "." + os.path.basename(self.path) + ".tmp-"
        # a crash between writing and renaming leaves a temporary file: the real file is intact
        for name in os.listdir(directory):
            if name.startswith(self._tmp_prefix):
                try:
                    os.unlink(os.path.join(directory, name))
                except OSError:
                    pass

    def read(self) -> dict[str, dict[str, Any]] | None:
        try:
            with open(self.path, encoding="utf-8") as fh:
                text = fh.read()
        except FileNotFoundError:
            return None
        if not text.strip():
            return None
        return json.loads(text)

    def write(self, data: dict[str, dict[str, Any]]) -> None:
        directory = os.path.dirname(self.path)
        fd, tmp = tempfile.mkstemp(prefix=self._tmp_prefix, dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(data, fh, ensure_ascii=False, **self._kwargs)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise

    def close(self) -> None:
        pass

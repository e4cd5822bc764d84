"""Fetch the JSON-Schema-Test-Suite (draft 2020-12) that the structured-output tests
run, as an install step (``nox -s tests`` runs it; tests never download anything).

The suite ships inside python-jsonschema's source distribution, under
``json/tests/draft2020-12``. This script asks pip for that sdist (from the package
index, like any other install step), and copies the suite's top-level test files
and its licence into ``tests/data/json-schema-test-suite/``: written to a temporary
directory first, checked, then renamed into place. It does nothing when the suite
is there already.

    python tests/fetch_schema_suite.py
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

VERSION = "4.26.0"
"""The python-jsonschema release whose copy of the suite the tests were checked on."""
TARGET = Path(__file__).parent / "data" / "json-schema-test-suite"
_PREFIX = f"jsonschema-{VERSION}/json/"


def fetch(target: Path = TARGET) -> Path:
    if (target / "draft2020-12").is_dir():
        return target
    with tempfile.TemporaryDirectory() as scratch:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
             "--no-binary", ":all:", f"jsonschema=={VERSION}", "--dest", scratch],
            check=True,
        )  # fmt: skip
        (sdist,) = Path(scratch).glob("jsonschema-*.tar.gz")
        staging = target.with_name(target.name + ".tmp")
        shutil.rmtree(staging, ignore_errors=True)
        (staging / "draft2020-12").mkdir(parents=True)
        with tarfile.open(sdist) as archive:
            for member in archive.getmembers():
                name = member.name.removeprefix(_PREFIX)
                wanted = name == "LICENSE" or (
                    name.startswith("tests/draft2020-12/")
                    and name.count("/") == 2
                    and name.endswith(".json")
                )
                if member.isfile() and wanted and member.name.startswith(_PREFIX):
                    source = archive.extractfile(member)
                    assert source is not None
                    out = staging / name.removeprefix("tests/")
                    out.write_bytes(source.read())
        files = list((staging / "draft2020-12").glob("*.json"))
        if not files or not (staging / "LICENSE").is_file():
            raise SystemExit(f"the sdist of jsonschema {VERSION} had no test suite")
        for path in files:
            json.loads(path.read_text())  # whole and readable
        staging.rename(target)
    return target


if __name__ == "__main__":
    print(f"JSON-Schema-Test-Suite in {fetch()}")

"""The spawn start method (Windows, macOS) re-imports modules in worker processes: import and prepare
must still work, since their worker functions live at module level and nothing runs on import."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = """
import multiprocessing, sys
from pathlib import Path

def main():
    multiprocessing.set_start_method("spawn", force=True)
    from snapid.data.cache import PrepareParams, prepare
    from snapid.importer import import_dataset
    from snapid.track import datasets as dataset_store
    from snapid.track.db import get_engine, transaction
    from snapid.workspace import Workspace
    ws = Workspace.at(sys.argv[2])
    engine = get_engine(f"sqlite:///{ws.database}")
    report = import_dataset(Path(sys.argv[1]), name="pets", engine=engine, workers=2)
    with transaction(engine) as s:
        manifest = dataset_store.load_manifest(s, name="pets")
    prepared = prepare(manifest, ws, PrepareParams(size=32), workers=2, shard_size=16)
    print(report.images, prepared.items)

if __name__ == "__main__":
    main()
"""


def test_import_and_prepare_under_spawn(tmp_path):
    from tests.data.test_importer import make_folder

    root = make_folder(tmp_path / "pets", per_class=40, size=(48, 40))
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    out = subprocess.run([sys.executable, str(script), str(root), str(tmp_path / "home")], capture_output=True,
                         text=True, cwd=Path(__file__).resolve().parents[1], timeout=300,
                         env={"PYTHONPATH": str(Path(__file__).resolve().parents[1]), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["80", "80"]

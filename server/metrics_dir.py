"""The folder where the processes of one `python -m server` write their metric values (prometheus_client's
multiprocess mode), named in PROMETHEUS_MULTIPROC_DIR.

prometheus_client decides between values in memory and values in these files once, when it is first
imported, from that variable: so this module imports nothing that imports it, and server/__main__.py
claims the folder before its other imports.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


def claim(data_dir: Path) -> Path:
    """An empty folder for this supervisor and its workers, DATA_DIR/metrics/<pid>, set in the variable.

    One per supervisor, so that two services sharing DATA_DIR (`make run` beside the tests, say) never
    add up each other's values or wipe each other's files; the folders of supervisors that are no longer
    running (killed without a chance to clean up) are removed."""
    root = (data_dir / "metrics").resolve()
    root.mkdir(parents=True, exist_ok=True)
    for folder in root.iterdir():
        if folder.name.isdigit() and not _running(int(folder.name)):
            shutil.rmtree(folder, ignore_errors=True)
    own = root / str(os.getpid())
    shutil.rmtree(own, ignore_errors=True)  # a pid reused from an earlier run
    own.mkdir()
    os.environ[VARIABLE] = str(own)
    return own


def release() -> None:
    """Remove the folder this process claimed (nothing in a process that claimed none)."""
    folder = os.environ.get(VARIABLE)
    if folder and Path(folder).name == str(os.getpid()):
        shutil.rmtree(folder, ignore_errors=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True

"""A child process for tests/test_trust_store.py: ``python -m tests.trust_store_worker reader URL NAME GO``.

``reader`` is a long-running reader (a server's store): it opens the store, reads the head (so that it holds that
version in its cache), writes ``<GO>.ready`` and waits for the file ``<GO>``. Meanwhile the test, in another
process, rolls the playbook back. Then the reader reads the new head, version 3 by number, the diff from 1 to 3,
commits a TAG on the head and reads again; it prints one JSON object with what it saw, or ``{"error": ...}`` and
exits 1 at the first failure.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from pathlib import Path

from ace.playbook import Delta
from ace.store import PlaybookStore


def reader(url: str, name: str, go: str) -> None:
    store = PlaybookStore(url)
    seen: dict[str, object] = {"cached": store.load_versioned(name)[0]}
    Path(f"{go}.ready").touch()
    deadline = time.monotonic() + 120
    while not Path(go).exists():
        if time.monotonic() > deadline:
            raise SystemExit("the test never said go")
        time.sleep(0.01)
    try:
        head, pb = store.load_versioned(name)
        seen["head"], seen["head_digest"] = head, pb.digest()
        seen["v3_digest"] = store.load(name, 3).digest()
        seen["diff_1_3"] = store.diff(name, 1, 3).touched_ids()
        bullet = next(iter(pb)).id
        info = store.commit(
            name, Delta.parse({"operations": [{"type": "TAG", "id": bullet, "tag": "helpful"}]}), author="reader"
        )
        seen["committed"], seen["committed_digest"] = info.version, info.digest
        seen["after_commit_digest"] = store.load(name).digest()
        seen["versions"] = [store.load(name, v).digest() for v in range(1, info.version + 1)]
    except Exception as e:
        print(json.dumps({"error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()[-2000:]}))
        raise SystemExit(1) from None
    finally:
        store.close()
    print(json.dumps(seen))


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "reader":
        reader(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        raise SystemExit(f"unknown mode {mode!r}")

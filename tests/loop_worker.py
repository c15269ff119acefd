"""Child process for the resume test: ``python -m tests.loop_worker DB CHECKPOINTS TAPE DATA N``.

Runs the loop over the first N Formula tasks and dies (``os._exit``, no cleanup) while recording the first step,
right after that step's delta was committed: the parent then resumes the same run.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ace.llm import LLM, Sampling
from ace.llm.cassette import Cassette
from ace.llm.local import LocalProvider
from ace.loop import LoopConfig, LoopContext, RunSetup, StepRecord, run
from ace.store import PlaybookStore
from ace.tasks import EVALUATORS, load_finance


def main() -> None:
    db, checkpoints, tape, data, n = sys.argv[1:6]
    store = PlaybookStore(db)

    def die_after_first(record: StepRecord) -> None:
        if record.index == 0:
            Path(checkpoints + ".died").write_text(str(record.version))
            os._exit(9)

    setup = RunSetup(
        llm=LLM(Cassette(tape, LocalProvider(), mode="auto"), sampling=Sampling(max_tokens=256)),
        store=store,
        playbook="fin",
        evaluator=EVALUATORS["formula"],
        config=LoopConfig(max_rounds=1, playbook_budget=300),
        on_step=die_after_first,
    )
    ctx = LoopContext(setup, load_finance(data, limit=int(n)), "resume-run")
    run(ctx, checkpoints)


if __name__ == "__main__":
    main()

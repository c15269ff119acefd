"""Governed learning (issue #24): promotion gated by matched trials and the watch after a promotion.

- :mod:`ace.governance.stats`: the statistics, pure: the exact McNemar test, the paired bootstrap, the decision
  rule (alpha and a minimum effect) and the campaign that spends a false-promotion budget over repeated looks;
- :mod:`ace.governance.gate`: a playbook's gate in the store's database (its lane, the test's settings, the
  campaign, the watch), its trials with each task's answers, and the outcomes agents reported;
- :mod:`ace.governance.trials`: a trial: candidate and serving answer the lane's tasks, the test decides, the
  policy acts (``gated`` serves a better candidate, ``gated+review`` passes it to a reviewer);
- :mod:`ace.governance.watch`: reported outcomes feed the regression detector; a drop demotes serving.
"""

from ace.governance.gate import Gate, Lane, LaneError, NoLane, Trial, load_lane, set_lane, set_watch
from ace.governance.stats import Campaign, CampaignSpent, Decision, Pair, decide, mcnemar, paired_bootstrap
from ace.governance.trials import NothingToTrial, TrialInterrupted, TrialReport, run_trial
from ace.governance.watch import Watched, observe

__all__ = [
    "Campaign",
    "CampaignSpent",
    "Decision",
    "Gate",
    "Lane",
    "LaneError",
    "NoLane",
    "NothingToTrial",
    "Pair",
    "Trial",
    "TrialInterrupted",
    "TrialReport",
    "Watched",
    "decide",
    "load_lane",
    "mcnemar",
    "observe",
    "paired_bootstrap",
    "run_trial",
    "set_lane",
    "set_watch",
]

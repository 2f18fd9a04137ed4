"""bandit over src/ finds nothing that is not waived with its reason (``# nosec BXXX`` or ``[tool.bandit]``).

bandit runs in this process, through the same calls as its command line (``bandit -c pyproject.toml -r
src``: the config's ``tests``/``skips`` as the profile, the command line's default path exclusions, every
plugin, findings of any severity and confidence): a ``bandit`` child process would spend ~0.4 CPU-s
starting Python and loading its plugins before reading a file.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bandit_finds_nothing_unjustified() -> None:
    with warnings.catch_warnings():  # imported here, not by every worker's collection; stevedore's own
        warnings.simplefilter("ignore", DeprecationWarning)  # deprecation (verify_requirements) is not ours
        from bandit.core import config, constants, manager
    conf = config.BanditConfig(config_file=str(ROOT / "pyproject.toml"))
    profile = {"include": set(conf.get_option("tests") or []), "exclude": set(conf.get_option("skips") or [])}
    scan = manager.BanditManager(conf, "file", profile=profile, quiet=True)
    assert scan.b_ts.tests, "no bandit test would run"
    bandit_log = logging.getLogger("bandit")
    level = bandit_log.level
    bandit_log.setLevel(logging.ERROR)  # its WARNINGs are notes on `# nosec` comments, not findings
    try:
        with warnings.catch_warnings():  # shown, not raised, as in a bandit process of its own
            warnings.simplefilter("default")
            scan.discover_files([str(ROOT / "src")], True, ",".join(constants.EXCLUDE))
            scan.run_tests()
    finally:
        bandit_log.setLevel(level)
    findings = [
        f"{Path(issue.fname).relative_to(ROOT)}:{issue.lineno} {issue.test_id} ({issue.severity}): {issue.text}"
        for issue in scan.get_issue_list(sev_level=constants.LOW, conf_level=constants.LOW)
    ]
    assert not findings, "\n".join(findings)
    assert not scan.get_skipped(), scan.get_skipped()
    assert scan.metrics.data["_totals"]["loc"] > 1000  # it did scan the sources

"""Version digests in the carried-forward form (``ace.playbook/v2``: order hash + additive sum of bullet hashes).

Every version of every playbook is rebuilt from its snapshots and deltas, checked against the digest recorded
under the first release's algorithm (kept below, as it was), and only then given its digest under today's. A
version that does not match its old digest stops the upgrade, which then changes nothing: a corrupt history is
never re-blessed with fresh digests.
"""

import hashlib
import json

import sqlalchemy as sa
from alembic import op

from ace.playbook import REPLAY_POLICY, Delta, Playbook, apply
from ace.store.errors import StoreIntegrityError

revision = "0004"
down_revision = "0003"


def digest_v1(pb: Playbook) -> str:
    """The first release's version digest, as it was."""
    h = hashlib.sha256(b"ace.playbook/v1\0%d\0" % pb.next_id)
    for sec in pb.sections.values():
        h.update(f"\x1e{sec.name}\x1f{sec.slug}\x1f".encode())
        h.update(b"".join(pb[i].digest() for i in sec.ids))
    return h.hexdigest()


def upgrade() -> None:
    conn = op.get_bind()
    playbooks = conn.execute(sa.text("SELECT id, namespace, name FROM ace_playbooks ORDER BY id")).all()
    for pid, namespace, name in playbooks:
        rows = conn.execute(
            sa.text("SELECT version, delta, digest FROM ace_versions WHERE playbook_id = :p ORDER BY version"),
            {"p": pid},
        ).all()
        snaps: dict[int, str] = {
            v: state
            for v, state in conn.execute(
                sa.text("SELECT version, state FROM ace_snapshots WHERE playbook_id = :p"), {"p": pid}
            ).all()
        }
        state = None
        for version, delta, recorded in rows:
            if version in snaps:
                state = Playbook.from_dict(json.loads(snaps[version]))
            elif delta is not None and state is not None:
                state = apply(state, Delta.model_validate_json(delta), policy=REPLAY_POLICY).playbook
            else:
                where = f"{namespace}/{name} version {version}"
                raise StoreIntegrityError(f"{where}: no snapshot and no delta to rebuild it from")
            if recorded not in (digest_v1(state), state.digest()):
                raise StoreIntegrityError(
                    f"{namespace}/{name} version {version} does not match its recorded digest: the history is corrupt; "
                    "nothing was changed (restore a backup, or roll the playbook back before upgrading)"
                )
            conn.execute(
                sa.text("UPDATE ace_versions SET digest = :d WHERE playbook_id = :p AND version = :v"),
                {"d": state.digest(), "p": pid, "v": version},
            )

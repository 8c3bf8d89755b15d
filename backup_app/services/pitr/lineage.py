"""Which cluster a target's archive follows. Each cluster is a lineage of its own, named by its
system identifier: WAL of another cluster at the target's address (a rebuilt server, a restored
VM) is never archived as this one's; `pitr enable --new-cluster` starts a new lineage."""
from sqlalchemy import update
from sqlalchemy.orm import Session

from backup_app.errors import PitrError
from backup_app.models import BaseBackup, Target, WalFile, WalReceiver


class ClusterChanged(PitrError):
    """The server at the target's address is not the cluster its archive follows."""


def changed_error(target: Target, found: str, where: str) -> ClusterChanged:
    return ClusterChanged(
        f"the server at {where} is another cluster (system identifier {found}; {target.name}'s archive follows "
        f"{target.pitr_system_identifier}): its WAL is not archived. If it replaced the old server, start a new "
        f"lineage with `flask pitr enable {target.name} --new-cluster` (or New cluster on the PITR page); the old "
        "lineage stays restorable")


def follow(session: Session, target: Target, found: str, where: str) -> None:
    """Check that the server's system identifier `found` is the archive's. A target that has none
    yet takes it, with what was archived before lineages were recorded; ClusterChanged otherwise."""
    if target.pitr_system_identifier is None:
        session.add(target)
        target.pitr_system_identifier = found
        for model in (WalFile, BaseBackup):
            session.execute(update(model).where(model.target == target.name, model.system_identifier.is_(None))
                            .values(system_identifier=found).execution_options(synchronize_session=False))
        session.commit()
    elif target.pitr_system_identifier != found:
        raise changed_error(target, found, where)


def start_new(session: Session, target: Target, found: str, where: str) -> None:
    """Archive the cluster `found` from now on, as a new lineage (the old one is kept as it is)."""
    if target.pitr_system_identifier == found:
        raise PitrError(f"--new-cluster: the server at {where} is the cluster {target.name}'s archive already follows "
                        f"(system identifier {found}); there is no new lineage to start")
    session.add(target)
    target.pitr_system_identifier = found
    receiver = session.get(WalReceiver, target.name)
    if receiver is not None:
        receiver.last_segment = receiver.last_segment_at = receiver.stored_lsn = receiver.error = None
    session.commit()

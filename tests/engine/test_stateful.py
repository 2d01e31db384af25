"""The sync contract as a hypothesis state machine.

Random creates, edits, closes and deletes on both servers, interleaved with sync rounds.  A
model tracks, for every linked pair and field, what each side held at the last agreement; from
it the test predicts exactly which fields must show up in the conflict log (changed on both
sides to values that do not agree) and checks the ledger's log against that prediction after
every round.  At the end conflicts are resolved, a quiet round runs, and both sides must agree
field by field, with no record duplicated.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from syncd.engine.records import find_marker

from .harness import Harness, make_harness

CANCELLED = 6  # the simulator's "cancelled" status id (clickmaint.cancelled_status)

FIELDS = ("title", "description", "status", "due")
WORDS = st.sampled_from(["Bomba", "Compresor", "Filtro", "Válvula", "Motor", "Tablero", "Ñandú"])
TEXT = st.builds(lambda a, b, n: f"{a} {b} {n}", WORDS, WORDS, st.integers(0, 9))
CM_STATUS = st.sampled_from([1, 2, 3, 5])
MT_ESTADO = st.sampled_from(["ESPERA", "PROGRAMADA", "EJECUCION", "REALIZADA"])
#: whole hours ahead: both servers hold them exactly (mantenimiento keeps minutes)
DUE_HOURS = st.integers(24, 24 * 60)


def due_at(hours: int) -> datetime:
    return datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(hours=hours)


class SyncMachine(RuleBasedStateMachine):
    #: extra config of this machine (a subclass runs the same contract under another policy)
    POLICY = ""

    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="syncd-stateful-"))
        # the mass-delete guard has its own tests; here deletions pile up between the full
        # passes that find Click Maint's, and each must cancel its partner
        self.h: Harness = make_harness(
            self.tmp, extra_config="[deletes]\nmax_fraction = 1.0\n" + self.POLICY
        )
        #: work orders deleted in Click Maint -> the OT they were linked to at the time
        self.deleted_wos: dict[str, str] = {}
        #: OTs deleted in mantenimiento -> the work order they were linked to at the time
        self.deleted_ots: dict[str, str] = {}
        #: (cm_id, field) -> (cm base, mt base): what each side held at the last agreement
        self.base: dict[tuple[str, str], tuple[object, object]] = {}
        self.expected_conflicts: set[tuple[str, str]] = set()
        self.rounds = 0

    def teardown(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)

    # -- helpers -----------------------------------------------------------------------------
    def snapshot(self, cm_id: str, mt_id: str) -> tuple[dict, dict] | None:
        wo = self.h.cm.work_orders.get(int(cm_id))
        ot = self.h.mt.ots.get(int(mt_id))
        if wo is None or ot is None:
            return None
        cm = self.h.mapping.from_cm(self.h.cm.render_work_order(wo, detail=True))
        mt = self.h.mapping.from_mt(self.h.mt.render_detail(ot))
        return cm, mt

    def active_pairs(self) -> list[tuple[str, str]]:
        ledger = self.h.ledger()
        try:
            links = ledger.iter_links("work_orders", state="active")
            return [(link.cm_id, link.mt_id) for link in links]
        finally:
            ledger.close()

    def logged_conflicts(self, status: str | None = None) -> set[tuple[str, str]]:
        ledger = self.h.ledger()
        try:
            return {(c.cm_id, c.field) for c in ledger.list_conflicts(status=status)}
        finally:
            ledger.close()

    def pick_wo(self, n: int) -> int | None:
        ids = sorted(self.h.cm.work_orders)
        wo = ids[n % len(ids)] if ids else None
        # likewise a later edit of a work order cancelled because its OT was deleted
        self.deleted_ots = {o: w for o, w in self.deleted_ots.items() if w != str(wo)}
        return wo

    def pick_ot(self, n: int) -> int | None:
        ids = sorted(self.h.mt.ots)
        ot = ids[n % len(ids)] if ids else None
        # a user may reopen or edit an OT after its work order was deleted and syncd
        # cancelled it: that later edit is theirs to keep, so it leaves the cancel check
        self.deleted_wos = {w: o for w, o in self.deleted_wos.items() if o != str(ot)}
        return ot

    # -- rules -----------------------------------------------------------------------------
    @initialize(n_wo=st.integers(0, 3), n_ot=st.integers(0, 3))
    def seed(self, n_wo: int, n_ot: int) -> None:
        for i in range(n_wo):
            self.create_wo(f"Inicial {i}")
        for i in range(n_ot):
            self.create_ot(f"OT inicial {i}")
        self.sync()

    @rule(title=TEXT)
    def create_wo(self, title: str) -> None:
        self.h.cm.create_work_order({"title": title, "description": "nuevo"})

    @rule(desc=TEXT)
    def create_ot(self, desc: str) -> None:
        start = datetime.now(UTC) + timedelta(days=1)
        self.h.mt.create_ot(
            descripcion_corta=desc,
            tipo="CORRECTIVA",
            prioridad="MEDIA",
            estado="PROGRAMADA",
            ubicacion_id=12,
            inicio_programado=start.isoformat(),
            fin_programado=(start + timedelta(hours=2)).isoformat(),
        )

    @rule(
        n=st.integers(0, 50),
        title=TEXT,
        text=TEXT,
        status=CM_STATUS,
        hours=DUE_HOURS,
        which=st.integers(0, 3),
    )
    def edit_cm(self, n: int, title: str, text: str, status: int, hours: int, which: int) -> None:
        wo = self.pick_wo(n)
        if wo is None:
            return
        change = [
            {"title": title},
            {"description": text},
            {"status_id": status},
            {"due_date": due_at(hours).isoformat()},
        ][which]
        self.h.cm.update_work_order(wo, change)

    @rule(
        n=st.integers(0, 50),
        title=TEXT,
        text=TEXT,
        estado=MT_ESTADO,
        hours=DUE_HOURS,
        which=st.integers(0, 3),
    )
    def edit_mt(self, n: int, title: str, text: str, estado: str, hours: int, which: int) -> None:
        ot = self.pick_ot(n)
        if ot is None:
            return
        end = due_at(hours)
        change = [
            {"descripcion_corta": title},
            {"notas": text},
            {"estado": estado},
            {"inicio_programado": end - timedelta(hours=2), "fin_programado": end},
        ][which]
        self.h.mt.update_ot(ot, **change)

    @rule(n=st.integers(0, 50))
    def close_mt(self, n: int) -> None:
        ot = self.pick_ot(n)
        if ot is None or self.h.mt.ots[ot]["cierre"] is not None:
            return
        now = datetime.now(UTC)
        self.h.mt.close_ot(ot, fecha_inicio=now - timedelta(hours=1), fecha_fin=now)

    @precondition(lambda self: len(self.h.mt.ots) > 4)
    @rule(n=st.integers(0, 50))
    def delete_ot(self, n: int) -> None:
        ot = self.pick_ot(n)
        if ot is None:
            return
        partner = {mt: cm for cm, mt in self.active_pairs()}.get(str(ot))
        self.h.mt.delete_ot(ot)
        if partner is not None:
            self.deleted_ots[str(ot)] = partner

    @precondition(lambda self: len(self.h.cm.work_orders) > 4)
    @rule(n=st.integers(0, 50))
    def delete_wo(self, n: int) -> None:
        wo = self.pick_wo(n)
        if wo is None:
            return
        partner = dict(self.active_pairs()).get(str(wo))
        self.h.cm.delete_work_order(wo)
        if partner is not None:
            self.deleted_wos[str(wo)] = partner

    @rule()
    def sync(self) -> None:
        """One round: predict the conflicts from the model, run syncd, compare."""
        for cm_id, mt_id in self.active_pairs():
            snap = self.snapshot(cm_id, mt_id)
            if snap is None:
                continue
            cm, mt = snap
            for field in FIELDS:
                base = self.base.get((cm_id, field))
                if base is None:
                    continue
                cm_changed, mt_changed = cm[field] != base[0], mt[field] != base[1]
                if (
                    cm_changed
                    and mt_changed
                    and not self.h.mapping.agree(field, cm[field], mt[field])
                ):
                    self.expected_conflicts.add((cm_id, field))
        report = self.h.sync()
        assert report.status == "ok", report.error
        self.rounds += 1
        logged = self.logged_conflicts()
        assert logged == self.expected_conflicts, (
            f"conflict log {sorted(logged)} != expected {sorted(self.expected_conflicts)}"
        )
        # bases advance like syncd's: not for fields held by an open conflict
        held = self.logged_conflicts(status="open")
        for cm_id, mt_id in self.active_pairs():
            snap = self.snapshot(cm_id, mt_id)
            if snap is None:
                continue
            cm, mt = snap
            for field in FIELDS:
                if (cm_id, field) not in held or (cm_id, field) not in self.base:
                    self.base[(cm_id, field)] = (cm[field], mt[field])

    # -- invariants --------------------------------------------------------------------------
    @invariant()
    def no_duplicates(self) -> None:
        """Each record has at most one partner, and nothing syncd created is left unlinked."""
        pairs = self.h.pairs()
        assert len({cm for cm, _ in pairs}) == len(pairs)
        assert len({mt for _, mt in pairs}) == len(pairs)
        ledger = self.h.ledger()
        try:  # an OT whose work order was deleted stays linked, as `cm_deleted`
            links = list(ledger.iter_links("work_orders", state=None))
            linked_ots = {int(k.mt_id) for k in links}
        finally:
            ledger.close()
        strays = [
            i
            for i, ot in self.h.mt.ots.items()
            if ot["tipo"] == "NO_PROGRAMADA" and i not in linked_ots
        ]
        assert not strays, f"OTs created by syncd but unlinked: {strays}"
        linked_wos = {int(k.cm_id) for k in links}
        cm_strays = [
            i
            for i, wo in self.h.cm.work_orders.items()
            if find_marker(str(wo["description"] or "")) is not None and i not in linked_wos
        ]
        assert not cm_strays, f"work orders created by syncd but unlinked: {cm_strays}"

    def check_convergence(self) -> None:
        """Faults stop: a day passes (so the next cycle lists Click Maint ids, which is how
        deletions are found), sync with closed OTs included, settle open conflicts, sync until
        quiet."""
        ledger = self.h.ledger()
        ledger.set_meta("wo_last_reconcile", "2000-01-01T00:00:00.000Z")
        ledger.close()
        self.h.sync(include_closed=True)
        for _ in range(3):
            ledger = self.h.ledger()
            open_conflicts = ledger.list_conflicts(status="open")
            for conflict in open_conflicts:
                ledger.resolve_conflict(conflict.id, resolution="clickmaint", value=None, by="test")
            ledger.close()
            self.h.quiet_sync()
            self.h.sync(include_closed=True)
            if not open_conflicts:
                break
        assert self.h.disagreements() == []
        for wo, ot in self.deleted_wos.items():
            if int(ot) in self.h.mt.ots:  # deleted on both sides is fine too
                estado = self.h.mt.ots[int(ot)]["estado"]
                assert estado == "CANCELADA", f"wo {wo} deleted, its OT {ot} is {estado}"
        for ot, wo in self.deleted_ots.items():
            if int(wo) in self.h.cm.work_orders:
                status = self.h.cm.work_orders[int(wo)]["status_id"]
                assert status == CANCELLED, f"ot {ot} deleted, its work order {wo} is {status}"


class NewestWinsMachine(SyncMachine):
    """The same contract under the `newest` policy: conflicts are logged and settled at once
    (status `auto`), none stays open."""

    POLICY = '[conflicts]\ndefault_policy = "newest"\n'


STATEFUL_SETTINGS = settings(
    max_examples=int(os.environ.get("SYNCD_STATEFUL_EXAMPLES", "20")),
    stateful_step_count=int(os.environ.get("SYNCD_STATEFUL_STEPS", "18")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


class TestStatefulSync(SyncMachine.TestCase):  # type: ignore[name-defined]
    # long: SYNCD_STATEFUL_EXAMPLES=150 SYNCD_STATEFUL_STEPS=30 pytest --timeout=0 <this file>
    settings = STATEFUL_SETTINGS


class TestStatefulSyncNewest(NewestWinsMachine.TestCase):  # type: ignore[name-defined]
    settings = settings(STATEFUL_SETTINGS, max_examples=max(5, STATEFUL_SETTINGS.max_examples // 2))


def _teardown_with_convergence(self: SyncMachine) -> None:
    try:
        self.check_convergence()
    finally:
        shutil.rmtree(self.tmp, ignore_errors=True)


SyncMachine.teardown = _teardown_with_convergence  # type: ignore[method-assign]

"""The mapping fingerprint gate shared by the streams whose records the mapping shapes.

A changed mapping (vocabularies, id maps, scope, statuses) would silently rewrite every
record on the next cycle.  The ledger keeps the fingerprint it was built with; a stream refuses
to run while the configuration's differs, until an operator accepts it with
`syncd resync --rebaseline`.  Part transactions are facts (never revisited), so `part_usage`
is not gated.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .run import MappingChanged

if TYPE_CHECKING:
    from .run import Stream

META_KEY = "mapping_fingerprint"


def check_mapping_fingerprint(stream: Stream, *, rebaseline: bool) -> None:
    """Raise MappingChanged unless the ledger's fingerprint accepts this configuration.

    The first stream to run on a new ledger stores it; `rebaseline` stores the new one (with a
    history entry naming both); a fingerprint from an older formula that still matches is
    quietly brought up to date.
    """
    config, ledger = stream.config, stream.ledger
    current = config.mapping_fingerprint()
    stored = ledger.get_meta(META_KEY)
    if stored == current:
        return
    if stored is None or config.fingerprint_matches(stored):
        if not stream.rt.dry_run:
            ledger.set_meta(META_KEY, current)
        return
    if not rebaseline:
        raise MappingChanged(
            f"the mapping configuration changed (fingerprint {stored} -> {current}); "
            "review it, then run `syncd resync --rebaseline` to accept it"
        )
    if not stream.rt.dry_run:
        ledger.set_meta(META_KEY, current)
        stream.history("rebaseline", old=stored, new=current)

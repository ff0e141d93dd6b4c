"""Plans (seed 003, issue 5): Inspect -> Plan -> Dispatch -> Verify -> Record.

The core of plans: models are in :mod:`loopwright.models.plans`; this package holds the ports
(:mod:`.ports`), the DAG (:mod:`.dag`), validation (:mod:`.validation`), the pure state
transitions (:mod:`.transitions`), gate:all (:mod:`.verify`), inspection packets
(:mod:`.inspect`), the deterministic planner (:mod:`.decompose`) and the operations over the
ports (:mod:`.service`). Like the rest of the core it imports no adapter, engine, CLI or AWS SDK.
"""

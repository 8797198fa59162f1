"""The batch engine. PostgreSQL is the source of truth and the queue only triggers work.

One path per operation, each in its own module, each hot statement a versioned PL/pgSQL function
(batches/sql/engine_v1.sql, loaded by a migration) with one Python call site:

- claim (`claim.py`, `batch_claim_v1`): lease the next due leads in position order, each with its
  worst case reserved within the batch and daily budgets, never more than `concurrency` in flight;
- process and settle (`settle.py`, `batch_settle_v1`): provider calls outside any transaction, then the
  result written under the lease owner's guard and the money settled from the call log;
- dispatch (`dispatch.py`, `batch_lease_renew_v1`): a runner's bounded slice, its thread pool and the
  heartbeat that renews its leases;
- finish (`finish.py`): the final status from the lead rows, announced once;
- recover (`recover.py`, `batch_lease_recover_v1`): expired leases taken back, stranded batches
  restarted.

Invariants every module keeps: the lease owner guards every write after the claim; budgets are never
exceeded; counts derive from lead rows; paid calls are never bought twice (what a lead paid comes from
the call log, and paid provider data is cached for its retries).
"""

from batches.engine.claim import DONE, STOP, WAIT, Claim, PricedAhead, claim_leads, claim_next, worst_cases
from batches.engine.dispatch import new_owner, run_slice
from batches.engine.finish import BUDGET_EXHAUSTED, batch_finish_if_done, runner_count, runners_enqueue
from batches.engine.recover import recover
from batches.engine.settle import Result, process, retry_delay, settle

__all__ = [
    "BUDGET_EXHAUSTED",
    "DONE",
    "STOP",
    "WAIT",
    "Claim",
    "PricedAhead",
    "Result",
    "batch_finish_if_done",
    "claim_leads",
    "claim_next",
    "new_owner",
    "process",
    "recover",
    "retry_delay",
    "run_slice",
    "runner_count",
    "runners_enqueue",
    "settle",
    "worst_cases",
]

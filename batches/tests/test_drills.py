"""Fault drills on real processes (bench/drills), sized to run in CI's PostgreSQL + Redis pass.

Each drill starts its own qcluster / daphne / redis-server subprocesses against the test database and
returns the problems it found (lost leads, a provider paid twice, ledger != call log, a reservation left
behind, a socket that did not resync); the scripts in bench/drills run the same drills at full size.
"""

import pytest
from django.db import connection

from bench.drills import double_delivery, kill_one, pg_restart, provider_outage, redis_restart
from bench.drills._drill import drill_env
from leadgen.embedded_db import database_url

pytestmark = [pytest.mark.drill, pytest.mark.redis, pytest.mark.slow]


@pytest.fixture
def env(transactional_db, settings):
    settings.BATCH_LEASE_SECONDS = 5
    settings.DAILY_BUDGET_USD = 10_000_000
    # The workers must read the queue messages this process signs.
    return drill_env(
        connection.settings_dict["NAME"],
        DATABASE_URL=database_url(connection.settings_dict),
        REDIS_URL=settings.REDIS_URL,
        SECRET_KEY=settings.SECRET_KEY,
    )


def test_the_same_runner_task_delivered_twice_has_one_effect(env):
    # Long enough (~8 s at 200 ms a call) that the second delivery starts before the first one ends.
    assert double_delivery.drill(env, leads=150) == []


def test_a_killed_qcluster_of_two_loses_nothing_and_pays_nothing_twice(env):
    assert kill_one.drill(env, leads=120, recover_in_process=True) == []


def test_a_provider_outage_fails_or_retries_leads_and_nothing_else_stops(env):
    assert provider_outage.drill(env, leads=200, outage=10.0) == []


def test_a_redis_restart_mid_batch_loses_nothing_and_sockets_resync(env, settings):
    from bench._setup import free_port

    env["REDIS_URL"] = f"redis://127.0.0.1:{free_port()}/0"
    assert redis_restart.drill(env, leads=150, clients=5, recover_every=1.0) == []


def test_a_postgresql_restart_mid_batch_loses_nothing_and_pays_nothing_twice(env):
    # On a PostgreSQL server of the drill's own (the test database's server stays up): SIGKILLed at a
    # quarter of the batch, started again 3 s later; the checks run in the drill's subprocess there.
    assert pg_restart.drill(env, leads=150) == []

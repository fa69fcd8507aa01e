"""The job store on Redis: the fair queue of :class:`~tenantry.jobs.store.JobStore`, with
its guarantees (fair turns, bounded queues, leases, one unfinished job per key).

Every key starts with the store's prefix (``tenantry:jobs:`` unless told otherwise), so
that several stores can share one server. What they hold:

- ``job:<id>``, a hash: a job's fields as the ``jobs`` table has them, a NULL one missing.
  ``args`` is the JSON text as given, ``result`` the JSON text of the result; times are
  seconds since the epoch, to the microsecond.
- ``tenant:<tenant>``, a hash: the counters and turn of ``job_tenants`` (``queued``,
  ``running``, ``max_running``, ``last_claim``, ``paused_until``); ``tenants``, the set
  of tenants that have one.
- ``turns``, a sorted set of the tenants a claim may serve now (jobs queued, fewer running
  than their ``max_running``, no pause) scored by ``last_claim``: a claim reads its head,
  as the SQL claim reads ``job_tenants`` in that order. ``paused``, the paused tenants
  scored by the end of their pause, for claims to put back in ``turns``.
- ``queue:<tenant>``, the tenant's queued jobs scored by ``run_at``: its first member is
  the job a claim takes, however long the queue. ``running``, every running job scored by
  ``lease_until``, for :meth:`RedisJobStore.requeue_lost`.
- ``all:<tenant>`` and ``in:<state>:<tenant>``, the tenant's jobs (all; those in a state)
  scored by when they were enqueued, so that a page of :meth:`RedisJobStore.list` is a
  range, not a scan; ``finished:<tenant>``, its finished jobs by when they finished, for
  :meth:`RedisJobStore.purge`.
- ``keys:<tenant>``, a hash from a job key to the id of its unfinished job;
  ``schedules:<tenant>``, a hash from a schedule to the last period it was queued for.

Each change of state is one Lua script, which Redis runs with nothing in between: what the
SQL store's transaction is, without retries or locks held across round trips. Scripts
read the server's time (``TIME``), never the calling host's, so hosts whose clocks
disagree still agree on leases, delays and turns. A script names keys it reads from other
keys (a claim looks up its tenants' queues): the store needs one server, not a cluster.
"""

from __future__ import annotations

import json
import secrets
import time
from types import SimpleNamespace
from typing import Any

import redis

from tenantry.jobs.errors import JobQueueFull
from tenantry.jobs.records import Claimed, NewJob, describe
from tenantry.jobs.tables import (
    CANCELLED,
    FAILED,
    MAX_LOST,
    QUEUED,
    RUNNING,
    STATES,
    SUCCEEDED,
    jobs,
)

# Tenants in turn one claim looks at, at most, for one with a job due.
CLAIM_SCAN_LIMIT = 100_000
# How many finished jobs one call of the purge script removes: a long purge is many short
# scripts, so that other clients are not kept waiting behind it.
PURGE_BATCH = 1000

# Every script begins with this. ARGV[1] is the prefix of the keys; the states and limits
# are those of the SQL store, written into the scripts from its module.
_PRELUDE = (
    f"local QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = "
    f"{QUEUED!r}, {RUNNING!r}, {SUCCEEDED!r}, {FAILED!r}, {CANCELLED!r}\n"
    f"local STATES = {{{', '.join(repr(state) for state in STATES)}}}\n"
    f"local MAX_LOST = {MAX_LOST}\n"
    + """
local P = ARGV[1]
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000

-- Times are written as text to the microsecond: Lua's own tostring keeps 14 digits,
-- which would round them to the tenth of a millisecond.
local function at(seconds) return string.format('%.6f', seconds) end

-- An optional argument: '' stands for None, anything else comes after a '='.
local function opt(value)
  if value == nil or value == '' then return nil end
  return string.sub(value, 2)
end

local function count(tenant, queued, running)
  redis.call('HINCRBY', P .. 'tenant:' .. tenant, 'queued', queued)
  redis.call('HINCRBY', P .. 'tenant:' .. tenant, 'running', running)
end

-- Put the tenant in the turns, among the paused, or in neither, as its counters say:
-- the turns hold only the tenants a claim may take a job of now.
local function refresh(tenant)
  local turns, paused = P .. 'turns', P .. 'paused'
  local t = redis.call('HMGET', P .. 'tenant:' .. tenant,
    'queued', 'running', 'max_running', 'last_claim', 'paused_until')
  redis.call('ZREM', turns, tenant)
  redis.call('ZREM', paused, tenant)
  if not t[1] then return end
  if tonumber(t[5]) > now then
    redis.call('ZADD', paused, t[5], tenant)
  elseif tonumber(t[1]) > 0 and tonumber(t[2]) < tonumber(t[3]) then
    redis.call('ZADD', turns, t[4], tenant)
  end
end

-- The job moves from one state to another: so does its place in the pages of list().
local function move(tenant, id, enqueued, from, to)
  redis.call('ZREM', P .. 'in:' .. from .. ':' .. tenant, id)
  redis.call('ZADD', P .. 'in:' .. to .. ':' .. tenant, enqueued, id)
end

-- The job has finished: its key is free for a new job, and purge can find it.
local function ended(tenant, id, key)
  redis.call('ZADD', P .. 'finished:' .. tenant, at(now), id)
  if key and redis.call('HGET', P .. 'keys:' .. tenant, key) == id then
    redis.call('HDEL', P .. 'keys:' .. tenant, key)
  end
end

-- Queue the job of ARGV: 2 max_queued, 3 max_running, 4 id, 5 tenant, 6 module, 7 name,
-- 8 args, 9 key (optional), 10 delay, 11 retries, 12 timeout, 13 enqueued_by (optional).
local function enqueue()
  local id, tenant, key = ARGV[4], ARGV[5], opt(ARGV[9])
  if key then
    local found = redis.call('HGET', P .. 'keys:' .. tenant, key)
    if found then return {'found', found} end
  end
  local counters = P .. 'tenant:' .. tenant
  local queued = tonumber(redis.call('HGET', counters, 'queued') or 0)
  if queued >= tonumber(ARGV[2]) then return {'full', queued} end
  if redis.call('EXISTS', counters) == 0 then
    redis.call('HSET', counters, 'queued', 0, 'running', 0, 'last_claim', at(0),
      'paused_until', at(0))
    redis.call('SADD', P .. 'tenants', tenant)
  end
  local job, enqueued, run_at = P .. 'job:' .. id, at(now), at(now + tonumber(ARGV[10]))
  redis.call('HSET', job, 'id', id, 'tenant', tenant, 'module', ARGV[6], 'name', ARGV[7],
    'args', ARGV[8], 'state', QUEUED, 'attempt', 0, 'failures', 0, 'lost', 0,
    'retries', ARGV[11], 'timeout', ARGV[12], 'run_at', run_at, 'enqueued', enqueued,
    'cancel', 0)
  if key then
    redis.call('HSET', job, 'key', key)
    redis.call('HSET', P .. 'keys:' .. tenant, key, id)
  end
  local by = opt(ARGV[13])
  if by then redis.call('HSET', job, 'enqueued_by', by) end
  redis.call('ZADD', P .. 'queue:' .. tenant, run_at, id)
  redis.call('ZADD', P .. 'all:' .. tenant, enqueued, id)
  redis.call('ZADD', P .. 'in:' .. QUEUED .. ':' .. tenant, enqueued, id)
  count(tenant, 1, 0)
  redis.call('HSET', counters, 'max_running', ARGV[3])
  refresh(tenant)
  return {'new', id}
end
"""
)

# The scripts after the prelude. Enqueue's ARGV are those of enqueue() there.
_SCRIPTS: dict[str, str] = {"enqueue": "return enqueue()\n"}

# ARGV: as enqueue's, then 14 the schedule, 15 the period. A schedule never taken counts
# as taken for period -1, as the SQL store's first row of it says.
_SCRIPTS["enqueue_scheduled"] = """
local schedules = P .. 'schedules:' .. ARGV[5]
local last = tonumber(redis.call('HGET', schedules, ARGV[14]) or -1)
if last >= tonumber(ARGV[15]) then return {'taken'} end
local outcome = enqueue()
-- A full queue leaves the period free: a later look takes it when there is room.
if outcome[1] ~= 'full' then redis.call('HSET', schedules, ARGV[14], ARGV[15]) end
return outcome
"""

# ARGV: 2 lease seconds, 3 lease token, 4 how many tenants to look at, 5... tenants skipped.
_SCRIPTS["claim"] = """
local lease_seconds, lease, limit = tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
local skip = {}
for i = 5, #ARGV do skip[ARGV[i]] = true end
for _, t in ipairs(redis.call('ZRANGEBYSCORE', P .. 'paused', '-inf', at(now))) do refresh(t) end
local function due(tenant)
  if skip[tenant] then return nil end
  return redis.call('ZRANGEBYSCORE', P .. 'queue:' .. tenant, '-inf', at(now), 'LIMIT', 0, 1)[1]
end
-- Page through the turns until a tenant has a job due: those whose jobs all wait (a
-- delay, a retry's backoff) must not starve the tenants behind them.
local function take(tenant)
  local id = due(tenant)
  if id then
    local job, lease_until = P .. 'job:' .. id, at(now + lease_seconds)
    local attempt = redis.call('HINCRBY', job, 'attempt', 1)
    redis.call('HSET', job, 'state', RUNNING, 'started', at(now), 'lease', lease,
      'lease_until', lease_until)
    local j = redis.call('HMGET', job, 'module', 'name', 'args', 'timeout', 'enqueued')
    redis.call('ZREM', P .. 'queue:' .. tenant, id)
    redis.call('ZADD', P .. 'running', lease_until, id)
    move(tenant, id, j[5], QUEUED, RUNNING)
    count(tenant, -1, 1)
    redis.call('HSET', P .. 'tenant:' .. tenant, 'last_claim', at(now))
    refresh(tenant)
    return {id, tenant, j[1], j[2], j[3], attempt, j[4]}
  end
end
for start = 0, limit - 1, 64 do
  local page = redis.call('ZRANGE', P .. 'turns', start, start + 63)
  if #page == 0 then break end
  for _, tenant in ipairs(page) do
    local claimed = take(tenant)
    if claimed then return claimed end
  end
end
return false
"""

# ARGV: 2 id, 3 lease, 4 lease seconds, 5 done and 6 total (both or neither).
_SCRIPTS["heartbeat"] = """
local id, job = ARGV[2], P .. 'job:' .. ARGV[2]
local j = redis.call('HMGET', job, 'state', 'lease', 'cancel')
if j[1] ~= RUNNING or j[2] ~= ARGV[3] then return {0, 0} end
local lease_until = at(now + tonumber(ARGV[4]))
redis.call('HSET', job, 'lease_until', lease_until)
redis.call('ZADD', P .. 'running', lease_until, id)
if ARGV[5] then redis.call('HSET', job, 'done', ARGV[5], 'total', ARGV[6]) end
return {1, tonumber(j[3])}
"""

# ARGV: 2 id, 3 lease, 4 outcome (succeeded, cancelled or failed), 5 the result's JSON,
# 6 error (optional), 7 retry_after (optional).
_SCRIPTS["finish"] = """
local id, job, outcome = ARGV[2], P .. 'job:' .. ARGV[2], ARGV[4]
local j = redis.call('HMGET', job, 'state', 'lease', 'tenant', 'failures', 'retries',
  'enqueued', 'key')
if j[1] ~= RUNNING or j[2] ~= ARGV[3] then return false end
local tenant, err, retry_after = j[3], opt(ARGV[6]), opt(ARGV[7])
local state = outcome
if outcome == FAILED and retry_after and tonumber(j[4]) < tonumber(j[5]) then state = QUEUED end
redis.call('HDEL', job, 'lease', 'lease_until')
redis.call('ZREM', P .. 'running', id)
if outcome == FAILED then redis.call('HINCRBY', job, 'failures', 1) end
-- As the SQL store: a success keeps the error of an earlier try, the others set theirs.
if state == SUCCEEDED then
  redis.call('HSET', job, 'result', ARGV[5])
elseif err then
  redis.call('HSET', job, 'error', err)
else
  redis.call('HDEL', job, 'error')
end
redis.call('HSET', job, 'state', state)
move(tenant, id, j[6], RUNNING, state)
if state == QUEUED then
  local run_at = at(now + tonumber(retry_after))
  redis.call('HSET', job, 'run_at', run_at)
  redis.call('ZADD', P .. 'queue:' .. tenant, run_at, id)
  count(tenant, 1, -1)
else
  count(tenant, 0, -1)
  redis.call('HSET', job, 'finished', at(now))
  ended(tenant, id, j[7])
end
refresh(tenant)
return state
"""

# ARGV: 2 id, 3 lease, 4 pause seconds (optional).
_SCRIPTS["release"] = """
local id, job, pause = ARGV[2], P .. 'job:' .. ARGV[2], opt(ARGV[4])
local j = redis.call('HMGET', job, 'state', 'lease', 'tenant', 'enqueued', 'run_at')
if j[1] ~= RUNNING or j[2] ~= ARGV[3] then return false end
local tenant = j[3]
redis.call('HDEL', job, 'lease', 'lease_until')
redis.call('HSET', job, 'state', QUEUED)
if pause then
  redis.call('HINCRBY', job, 'attempt', -1)
  redis.call('HSET', P .. 'tenant:' .. tenant, 'paused_until', at(now + tonumber(pause)))
else
  redis.call('HINCRBY', job, 'lost', 1)
end
redis.call('ZREM', P .. 'running', id)
redis.call('ZADD', P .. 'queue:' .. tenant, j[5], id)
move(tenant, id, j[4], RUNNING, QUEUED)
count(tenant, 1, -1)
refresh(tenant)
return 1
"""

# ARGV: 2 the error of a job lost MAX_LOST times.
_SCRIPTS["requeue_lost"] = """
local found = 0
for _, id in ipairs(redis.call('ZRANGEBYSCORE', P .. 'running', '-inf', '(' .. at(now))) do
  local job = P .. 'job:' .. id
  local j = redis.call('HMGET', job, 'state', 'tenant', 'lost', 'enqueued', 'key')
  redis.call('ZREM', P .. 'running', id)
  if j[1] == RUNNING then
    local tenant, gone = j[2], tonumber(j[3]) + 1 >= MAX_LOST
    found = found + 1
    redis.call('HINCRBY', job, 'lost', 1)
    redis.call('HDEL', job, 'lease', 'lease_until', 'finished', 'error')
    redis.call('HSET', job, 'run_at', at(now))
    count(tenant, gone and 0 or 1, -1)
    if gone then
      redis.call('HSET', job, 'state', FAILED, 'finished', at(now), 'error', ARGV[2])
      move(tenant, id, j[4], RUNNING, FAILED)
      ended(tenant, id, j[5])
    else
      redis.call('HSET', job, 'state', QUEUED)
      redis.call('ZADD', P .. 'queue:' .. tenant, at(now), id)
      move(tenant, id, j[4], RUNNING, QUEUED)
    end
    refresh(tenant)
  end
end
return found
"""

# ARGV: 2 tenant, 3 id.
_SCRIPTS["cancel"] = """
local tenant, id, job = ARGV[2], ARGV[3], P .. 'job:' .. ARGV[3]
local j = redis.call('HMGET', job, 'tenant', 'state', 'enqueued', 'key')
if j[1] ~= tenant then return false end
if j[2] == QUEUED then
  redis.call('HSET', job, 'state', CANCELLED, 'cancel', 1, 'finished', at(now))
  redis.call('ZREM', P .. 'queue:' .. tenant, id)
  move(tenant, id, j[3], QUEUED, CANCELLED)
  ended(tenant, id, j[4])
  count(tenant, -1, 0)
  refresh(tenant)
  return 'cancelled'
elseif j[2] == RUNNING then
  redis.call('HSET', job, 'cancel', 1)
  return 'stopping'
end
return 'finished'
"""

# ARGV: 2 tenant, 3 state (optional), 4 first and 5 last place of the page (newest first).
# A script, so that the total and the page are of one moment.
_SCRIPTS["list"] = """
local index = P .. 'all:' .. ARGV[2]
if opt(ARGV[3]) then index = P .. 'in:' .. opt(ARGV[3]) .. ':' .. ARGV[2] end
local page = {redis.call('ZCARD', index)}
if tonumber(ARGV[5]) >= tonumber(ARGV[4]) then
  for _, id in ipairs(redis.call('ZREVRANGE', index, ARGV[4], ARGV[5])) do
    page[#page + 1] = redis.call('HGETALL', P .. 'job:' .. id)
  end
end
return page
"""

# ARGV: 2 tenant, 3 days, 4 at most how many.
_SCRIPTS["purge"] = """
local tenant, done = ARGV[2], P .. 'finished:' .. ARGV[2]
local before = '(' .. at(now - tonumber(ARGV[3]) * 86400)
local ids = redis.call('ZRANGEBYSCORE', done, '-inf', before, 'LIMIT', 0, tonumber(ARGV[4]))
for _, id in ipairs(ids) do
  local state = redis.call('HGET', P .. 'job:' .. id, 'state')
  if state then redis.call('ZREM', P .. 'in:' .. state .. ':' .. tenant, id) end
  redis.call('DEL', P .. 'job:' .. id)
  redis.call('ZREM', P .. 'all:' .. tenant, id)
  redis.call('ZREM', done, id)
end
return #ids
"""

# ARGV: 2 tenant, 3 '1' to drop only its queued jobs.
_SCRIPTS["drop_tenant"] = """
local tenant, keys = ARGV[2], P .. 'keys:' .. ARGV[2]
if ARGV[3] == '1' then
  local queued = redis.call('ZRANGE', P .. 'in:' .. QUEUED .. ':' .. tenant, 0, -1)
  for _, id in ipairs(queued) do
    local key = redis.call('HGET', P .. 'job:' .. id, 'key')
    if key and redis.call('HGET', keys, key) == id then redis.call('HDEL', keys, key) end
    redis.call('DEL', P .. 'job:' .. id)
    redis.call('ZREM', P .. 'all:' .. tenant, id)
  end
  redis.call('DEL', P .. 'queue:' .. tenant, P .. 'in:' .. QUEUED .. ':' .. tenant)
  for _, id in ipairs(redis.call('ZRANGE', P .. 'in:' .. RUNNING .. ':' .. tenant, 0, -1)) do
    redis.call('HSET', P .. 'job:' .. id, 'cancel', 1)
  end
  if redis.call('EXISTS', P .. 'tenant:' .. tenant) == 1 then
    redis.call('HSET', P .. 'tenant:' .. tenant, 'queued', 0)
  end
  refresh(tenant)
  return #queued
end
local ids = redis.call('ZRANGE', P .. 'all:' .. tenant, 0, -1)
for _, id in ipairs(ids) do
  redis.call('DEL', P .. 'job:' .. id)
  redis.call('ZREM', P .. 'running', id)
end
for _, state in ipairs(STATES) do redis.call('DEL', P .. 'in:' .. state .. ':' .. tenant) end
for _, name in ipairs({'tenant:', 'queue:', 'all:', 'finished:', 'keys:', 'schedules:'}) do
  redis.call('DEL', P .. name .. tenant)
end
redis.call('SREM', P .. 'tenants', tenant)
refresh(tenant)
return #ids
"""

# ARGV: 2 tenant. Counts from the jobs' own states, not from the indexes kept beside them.
_SCRIPTS["recount"] = """
local tenant, counted = ARGV[2], {[QUEUED] = 0, [RUNNING] = 0}
local ids = redis.call('ZRANGE', P .. 'all:' .. tenant, 0, -1)
for _, id in ipairs(ids) do
  local state = redis.call('HGET', P .. 'job:' .. id, 'state')
  if counted[state] then counted[state] = counted[state] + 1 end
end
if redis.call('EXISTS', P .. 'tenant:' .. tenant) == 1 then
  redis.call('HSET', P .. 'tenant:' .. tenant, 'queued', counted[QUEUED],
    'running', counted[RUNNING])
  refresh(tenant)
end
return {#ids, counted[QUEUED], counted[RUNNING]}
"""

# The fields of a job's hash that are numbers (the others are text; None is no field).
_INTEGERS, _FLOATS = ("attempt", "done", "total"), ("enqueued", "started", "finished")


class RedisJobStore:
    """The jobs of every tenant of a home, on the Redis server of ``url``, under keys that
    start with ``prefix``. Its methods answer as :class:`JobStore`'s do."""

    def __init__(self, url: str, prefix: str = "tenantry:jobs:"):
        self.url, self.prefix = url, prefix
        self.redis = redis.Redis.from_url(url, decode_responses=True)
        self._scripts = {
            name: self.redis.register_script(_PRELUDE + body) for name, body in _SCRIPTS.items()
        }

    def _run(self, script: str, *args) -> Any:
        return self._scripts[script](args=[self.prefix, *args])

    def after_fork(self) -> None:
        """As :meth:`JobStore.after_fork`: new connections; the parent's stay open."""
        self.redis.connection_pool.reset()

    def create(self) -> None:
        """Load the scripts: there is nothing else to make (keys appear with the jobs)."""
        for script in self._scripts.values():
            self.redis.script_load(script.script)

    def clock(self) -> float:
        """As :meth:`JobStore.clock`: the Redis server's time, in seconds since the epoch."""
        seconds, microseconds = self.redis.time()
        return seconds + microseconds / 1_000_000

    def enqueue(self, job: NewJob, max_queued: int, max_running: int) -> tuple[str, bool]:
        """As :meth:`JobStore.enqueue`: (id, new), or :class:`JobQueueFull` raised."""
        outcome = self._run("enqueue", *_job_args(job, max_queued, max_running))
        return _enqueued(job, max_queued, outcome), outcome[0] == "new"

    def enqueue_scheduled(
        self, job: NewJob, schedule: str, period: int, max_queued: int, max_running: int
    ) -> str | None:
        """As :meth:`JobStore.enqueue_scheduled`: taking the period and queueing its job
        are one script; :class:`JobQueueFull` raised leaves the period free."""
        args = _job_args(job, max_queued, max_running)
        outcome = self._run("enqueue_scheduled", *args, schedule, int(period))
        return None if outcome[0] == "taken" else _enqueued(job, max_queued, outcome)

    def claim(self, lease_seconds: float, skip: frozenset[str] = frozenset()) -> Claimed | None:
        """As :meth:`JobStore.claim`: the next due job of the tenant whose turn it is."""
        lease = secrets.token_hex(16)
        limit = CLAIM_SCAN_LIMIT + len(skip)
        row = self._run("claim", repr(float(lease_seconds)), lease, limit, *sorted(skip))
        # The script answers id, tenant, module, name, args, attempt and timeout (as text).
        return None if row is None else Claimed(*row[:6], float(row[6]), lease=lease)

    def heartbeat(
        self, job_id: str, lease: str, lease_seconds: float, progress: tuple[int, int] | None = None
    ) -> tuple[bool, bool]:
        """As :meth:`JobStore.heartbeat`: (the lease is still held, a cancel was asked)."""
        done = [] if progress is None else [int(progress[0]), int(progress[1])]
        held, cancel = self._run("heartbeat", job_id, lease, repr(float(lease_seconds)), *done)
        return bool(held), bool(cancel)

    def finish(
        self,
        job_id: str,
        lease: str,
        *,
        result: object = None,
        error: str | None = None,
        retry_after: float | None = None,
        cancelled: bool = False,
    ) -> str | None:
        """As :meth:`JobStore.finish`: the new state, or None if the lease was lost."""
        if error is None and not cancelled:
            outcome, result_text = SUCCEEDED, json.dumps(result)
        else:
            outcome, result_text = (CANCELLED if cancelled else FAILED), ""
        retry = None if retry_after is None else repr(float(retry_after))
        args = (outcome, result_text, _optional(error), _optional(retry))
        return self._run("finish", job_id, lease, *args)

    def release(self, job_id: str, lease: str, pause: float | None = None) -> bool:
        """As :meth:`JobStore.release`: whether the lease was held."""
        pause_text = None if pause is None else repr(float(pause))
        return bool(self._run("release", job_id, lease, _optional(pause_text)))

    def requeue_lost(self) -> int:
        """As :meth:`JobStore.requeue_lost`: how many running jobs had lost their lease."""
        return int(self._run("requeue_lost", f"its runner was lost {MAX_LOST} times"))

    def cancel(self, tenant: str, job_id: str) -> str | None:
        """As :meth:`JobStore.cancel`: "cancelled", "stopping", "finished" or None."""
        return self._run("cancel", tenant, job_id)

    def get(self, tenant: str, job_id: str) -> dict | None:
        """As :meth:`JobStore.get`: one job of ``tenant`` as the API shows it."""
        fields = self.redis.hgetall(f"{self.prefix}job:{job_id}")
        return _describe(fields) if fields.get("tenant") == tenant else None

    def spec(self, tenant: str, job_id: str) -> dict | None:
        """As :meth:`JobStore.spec`: ``args``, ``retries`` and ``timeout``."""
        fields = ("tenant", "args", "retries", "timeout")
        owner, args, retries, timeout = self.redis.hmget(f"{self.prefix}job:{job_id}", fields)
        if owner != tenant:
            return None
        return {"args": args, "retries": int(retries), "timeout": float(timeout)}

    def list(
        self, tenant: str, state: str | None = None, limit: int = 50, offset: int = 0
    ) -> tuple[list[dict], int]:
        """As :meth:`JobStore.list`: a page of jobs, newest first, and how many in all."""
        first = max(offset, 0)  # as SQLite reads a negative OFFSET
        total, *rows = self._run("list", tenant, _optional(state), first, first + limit - 1)
        page = [_describe(dict(zip(row[::2], row[1::2], strict=True))) for row in rows if row]
        return page, int(total)

    def counts(self) -> dict[str, tuple[int, int]]:
        """As :meth:`JobStore.counts`: per tenant, (queued, running) as the counters say."""
        tenants = sorted(self.redis.smembers(self.prefix + "tenants"))
        with self.redis.pipeline() as pipe:
            for tenant in tenants:
                pipe.hmget(f"{self.prefix}tenant:{tenant}", "queued", "running")
            rows = pipe.execute()
        found = zip(tenants, rows, strict=True)
        return {tenant: (int(q), int(r)) for tenant, (q, r) in found if q is not None}

    def purge(self, older_than_days: float, tenant: str | None = None) -> int:
        """As :meth:`JobStore.purge`: how many finished jobs were removed. Each batch is
        one script; together they need not be one, as a finished job never changes."""
        tenants = [tenant] if tenant is not None else self.redis.smembers(self.prefix + "tenants")
        removed = 0
        for name in sorted(tenants):
            batch = PURGE_BATCH
            while batch == PURGE_BATCH:
                batch = self._run("purge", name, repr(float(older_than_days)), PURGE_BATCH)
                removed += batch
        return removed

    def drop_tenant(self, tenant: str, queued_only: bool = False) -> int:
        """As :meth:`JobStore.drop_tenant`: how many jobs were removed."""
        return int(self._run("drop_tenant", tenant, "1" if queued_only else "0"))

    def recount(self) -> dict[str, tuple[int, int]]:
        """As :meth:`JobStore.recount`, one script per tenant: the counts of the tenants
        that have jobs."""
        counted = {}
        for tenant in sorted(self.redis.smembers(self.prefix + "tenants")):
            total, queued, running = self._run("recount", tenant)
            if total:
                counted[tenant] = (queued, running)
        return counted


def _optional(value: str | None) -> str:
    # None and "" must differ (an error may be empty): see opt() in the scripts.
    return "" if value is None else "=" + value


def _job_args(job: NewJob, max_queued: int, max_running: int) -> list:
    # Sorted by when it was made (a tie-break among jobs of one moment), unguessable.
    job_id = f"{time.time_ns():016x}{secrets.token_hex(8)}"
    what = [job.tenant, job.module, job.name, job.args, _optional(job.key)]
    how = [repr(float(job.delay)), int(job.retries), repr(float(job.timeout))]
    return [int(max_queued), int(max_running), job_id, *what, *how, _optional(job.enqueued_by)]


def _enqueued(job: NewJob, max_queued: int, outcome: list) -> str:
    if outcome[0] == "full":
        raise JobQueueFull(
            f"tenant {job.tenant} has {outcome[1]} jobs waiting (MAX_QUEUED_JOBS is {max_queued})"
        )
    return outcome[1]


def _describe(fields: dict[str, str]) -> dict:
    """A job's hash as :func:`describe` shows a row of the ``jobs`` table."""
    row = dict.fromkeys(jobs.c.keys()) | fields
    for names, kind in ((_INTEGERS, int), (_FLOATS, float)):
        row.update({name: kind(row[name]) for name in names if row[name] is not None})
    return describe(SimpleNamespace(**row))


__all__ = ["RedisJobStore"]

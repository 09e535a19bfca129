"""The Lua scripts of remote links: each a check and an action Redis runs as one step,
so that no other client's command falls between them.

The keys of a link (``<stream>`` and ``<stream>:generation``, ``:producer``,
``:done:<group>``) are kept while a producer runs, and expire ``ttl`` seconds after the
group saw the end of the stream; a new run of the producer keeps them again. The lease
(``:lease``) always expires unless renewed.
"""

from __future__ import annotations

__all__ = ["END", "END_FIELD", "FORGET_IDLE", "FORGET_SELF", "OPEN", "link_keys"]

END_FIELD = b"end"
"""The field of the entry a producer writes when it closes (its value: the run's
generation). It only tells consumers to look for the end now; the end itself is what
:data:`END` finds."""


def link_keys(stream: str, group: str) -> list[str]:
    """Every key of a link but its lease: stream, generation, producer state, done mark."""
    return [stream, f"{stream}:generation", f"{stream}:producer", f"{stream}:done:{group}"]


OPEN = """
pcall(redis.call, 'XGROUP', 'CREATE', KEYS[1], ARGV[1], '0', 'MKSTREAM')
redis.call('PERSIST', KEYS[1])
redis.call('PERSIST', KEYS[4])
local generation = redis.call('INCR', KEYS[2])
redis.call('PERSIST', KEYS[2])
redis.call('SET', KEYS[3], 'open:' .. generation)
return {generation, redis.call('XLEN', KEYS[1])}
"""
"""A producer's run begins (KEYS = :func:`link_keys`, ARGV = the group): make the group
(and the stream) if missing, keep the link's keys, count the run, say it is open;
returns the run's generation and the stream's length (one round trip)."""

END = """
local run = redis.call('GET', KEYS[2])
if run and not string.match(run, '^%d+$') then return -1 end
local state = redis.call('GET', KEYS[3])
if not state then return 0 end
if not string.match(state, '^open:%d+$') and not string.match(state, '^closed:%d+$') then
    return -1
end
local generation = string.match(state, '^closed:(%d+)$')
if not generation or redis.call('XLEN', KEYS[1]) > 0 then return 0 end
if redis.call('GET', KEYS[4]) == generation and ARGV[1] ~= generation and ARGV[2] ~= '1' then
    return 0
end
redis.call('SET', KEYS[4], generation)
if ARGV[4] ~= '' then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[5], ARGV[4])
    for _, consumer in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[5])) do
        local fields = {}
        for i = 1, #consumer, 2 do fields[consumer[i]] = consumer[i + 1] end
        if fields['idle'] < tonumber(ARGV[6]) then
            redis.call('XADD', KEYS[1], '*', 'end', generation)
            break
        end
    end
end
for _, key in ipairs(KEYS) do redis.call('EXPIRE', key, ARGV[3]) end
return 1
"""
"""Whether the group has seen the end (KEYS = :func:`link_keys`; ARGV = the generation
this consumer saw open, ``1`` if it got entries, the TTL in seconds, and for a shared
group the consumer's name, the group and an idle time in ms): the producer has closed
and the stream is empty. The end of a run the group already consumed counts only for
consumers that took part in it (-1: the run counter or the producer state is not
actorflow's). At the end, the link's keys start to expire, and a consumer of a shared
group leaves it and, if others of the group have read lately, writes an end marker
again for them (one of them gets it, and so on)."""

FORGET_IDLE = """
local forgotten = 0
for _, consumer in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
    local fields = {}
    for i = 1, #consumer, 2 do fields[consumer[i]] = consumer[i + 1] end
    if fields['pending'] == 0 and fields['idle'] >= tonumber(ARGV[2])
            and fields['name'] ~= ARGV[3] then
        redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], fields['name'])
        forgotten = forgotten + 1
    end
end
return forgotten
"""
"""Remove the consumers of group ARGV[1] that hold nothing and have been idle for ARGV[2]
ms (dead ones; a live one that is removed comes back with its next read, losing
nothing), except ARGV[3]; returns how many."""

FORGET_SELF = """
if #redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2]) == 0 then
    return redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
end
return -1
"""
"""A consumer that ends leaves its group, unless it left entries pending there."""

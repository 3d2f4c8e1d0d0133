"""The floor: a bare grpc.aio server with two unary methods (bytes in, bytes
out, no logic), standing in for Authorize and Commit.

    floor_server.py PORT                  the floor
    floor_server.py PORT REDIS_URL        the floor plus one Redis round trip
                                          (PING) per call, over budgetd's own
                                          pipelined connection: what any store
                                          on that Redis must add at least
    floor_server.py PORT REDIS_URL store  the floor plus budgetd's Redis store:
                                          a hold, then a settle of it, made on
                                          the store directly (no validation,
                                          no protobuf, no budgetd service):
                                          what the store alone adds
"""

import asyncio
import itertools
import sys
import time

import grpc


async def main(port: int, redis_url: str | None, mode: str) -> None:
    if mode == "store":
        handlers = await store_handlers(redis_url)
    elif redis_url:
        handlers = await ping_handlers(redis_url)
    else:
        async def echo(body: bytes, context) -> bytes:
            return b"ok"

        handlers = {"Hold": echo, "Settle": echo}
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        "floor.Floor", {name: grpc.unary_unary_rpc_method_handler(h) for name, h in handlers.items()}),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print("ready", flush=True)
    await server.wait_for_termination()


async def ping_handlers(redis_url: str) -> dict:
    import redis.asyncio as aioredis

    from budgetd.store.redis.pipe import RedisPipe

    pipe = RedisPipe(aioredis.ConnectionPool.from_url(redis_url), timeout=5)

    async def echo_after_redis(body: bytes, context) -> bytes:
        await pipe.execute("PING")
        return b"ok"

    return {"Hold": echo_after_redis, "Settle": echo_after_redis}


async def store_handlers(redis_url: str) -> dict:
    from budgetd.config import Resolver, load_config_text
    from budgetd.plan import PlanCache
    from budgetd.store import HoldRequest, SettleRequest
    from budgetd.store.redis import RedisStore

    config = load_config_text("defaults: {daily_usd: 1000000}\n")  # as the bench's daemons
    plans = PlanCache(Resolver(config).budget, config.zone)
    store = RedisStore(f"{redis_url}?prefix=floor")
    await store.open()
    ids = itertools.count()
    held: list[str] = []  # the hold each settle settles (one client thread: in order)

    async def hold(body: bytes, context) -> bytes:
        now_ms = time.time_ns() // 1_000_000
        request_id = f"r{next(ids)}"
        held.append(request_id)
        await store.hold(HoldRequest(request_id, 1000, plans.get_at_ms("bench", now_ms), now_ms,
                                     now_ms + 600_000))
        return b"ok"

    async def settle(body: bytes, context) -> bytes:
        now_ms = time.time_ns() // 1_000_000
        # The plan carries the config's warn_at, as the daemon's do.
        await store.settle(SettleRequest(held.pop(0), 1000, plans.get_at_ms("bench", now_ms), now_ms))
        return b"ok"

    return {"Hold": hold, "Settle": settle}


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else None,
                     sys.argv[3] if len(sys.argv) > 3 else ""))

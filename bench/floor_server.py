"""The floor: a bare grpc.aio server with two unary methods (bytes in, bytes
out, no logic), standing in for Authorize and Commit.

    floor_server.py PORT                 the floor
    floor_server.py PORT REDIS_URL       the floor plus one Redis round trip
                                         (PING) per call, over budgetd's own
                                         pipelined connection: what any store
                                         on that Redis must add at least
"""

import asyncio
import sys

import grpc


async def main(port: int, redis_url: str | None) -> None:
    pipe = None
    if redis_url:
        import redis.asyncio as aioredis

        from budgetd.store.redis_pipe import RedisPipe

        pipe = RedisPipe(aioredis.ConnectionPool.from_url(redis_url), timeout=5)

    async def echo(body: bytes, context) -> bytes:
        return b"ok"

    async def echo_after_redis(body: bytes, context) -> bytes:
        await pipe.execute("PING")
        return b"ok"

    handler = echo_after_redis if pipe else echo
    handlers = {name: grpc.unary_unary_rpc_method_handler(handler) for name in ("Hold", "Settle")}
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("floor.Floor", handlers),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print("ready", flush=True)
    await server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else None))

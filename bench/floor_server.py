"""The floor: a bare grpc.aio server with two unary methods (bytes in, bytes
out, no logic), standing in for Authorize and Commit."""

import asyncio
import sys

import grpc


async def main(port: int) -> None:
    async def echo(body: bytes, context) -> bytes:
        return b"ok"

    handlers = {name: grpc.unary_unary_rpc_method_handler(echo) for name in ("Hold", "Settle")}
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("floor.Floor", handlers),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print("ready", flush=True)
    await server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))

"""TCP forwarder 198.18.0.1:6443 -> 127.0.0.1:6443 so that pods reach the API server (which listens on loopback).

The API server advertises 198.18.0.1, so the `kubernetes` Service (198.19.0.1:443) leads here through
kube-proxy. TLS passes through untouched (the serving certificate names 198.18.0.1 and kubernetes.default.svc).
Run: `python -m meshlab_lab.api_forward [--ready-file F]`.
"""
import argparse
import asyncio
import contextlib

from meshlab_lab import addresses as A


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


async def _client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", A.API_PORT)
    except OSError:
        writer.close()
        return
    await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))


async def serve(ready_file: str | None) -> None:
    server = await asyncio.start_server(_client, A.HOST_LAB_IP, A.API_PORT)
    if ready_file:
        open(ready_file, "w").close()
    async with server:
        await server.serve_forever()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="meshlab_lab.api_forward")
    parser.add_argument("--ready-file")
    args = parser.parse_args(argv)
    asyncio.run(serve(args.ready_file))


if __name__ == "__main__":
    main()

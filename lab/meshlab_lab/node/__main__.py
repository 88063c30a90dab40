"""`python -m meshlab_lab.node --index N --kubeconfig K --ready-file F`: one emulated node."""
import argparse
import asyncio
import logging
import signal
import threading

from meshlab_lab import paths
from meshlab_lab.node.agent import Node


async def _serve(node: Node, ready_file: str | None) -> None:
    from meshlab_lab.kubelet_api import serve_kubelet_api
    from meshlab_lab.node.runner import NodeRunner

    pki = paths.pki_dir()
    server = await serve_kubelet_api(NodeRunner(node), node.host_ip, node.kubelet_port,
                                     str(pki / f"kubelet-{node.name}.crt"), str(pki / f"kubelet-{node.name}.key"),
                                     str(pki / "ca.crt"))
    node.register()
    threading.Thread(target=node.heartbeat_loop, daemon=True, name="heartbeat").start()
    threading.Thread(target=node.watch_loop, daemon=True, name="pod-watch").start()
    if ready_file:
        open(ready_file, "w").close()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()
    await asyncio.get_running_loop().run_in_executor(None, node.shutdown)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="meshlab_lab.node")
    parser.add_argument("--index", type=int, default=1)
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--ready-file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(threadName)s %(levelname)s %(message)s")
    asyncio.run(_serve(Node(args.index, args.kubeconfig), args.ready_file))


if __name__ == "__main__":
    main()

"""``python -m meshlab_lab.mesh --kubeconfig .lab/kubeconfig --state-dir .lab``: the mesh addon of the lab.

Runs the istiod emulation (watch, config push, mesh CA, injection webhook) and the Route router, and
creates ``<state-dir>/run/meshlab_lab.mesh.ready`` once both serve.
"""
import argparse
import datetime
import logging
import signal
import threading
from pathlib import Path

from meshlab_lab.mesh import istiod as istiod_mod, router as router_mod, watch
from meshlab_lab.mesh.snapshot import Snapshot

LOG = logging.getLogger("meshlab.mesh")
READY_FILE = "meshlab_lab.mesh.ready"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m meshlab_lab.mesh")
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--cert-ttl-seconds", type=int, default=3600, help="workload cert lifetime")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    state = Path(args.state_dir).resolve()
    if not Path(args.kubeconfig).is_file():
        parser.error(f"kubeconfig {args.kubeconfig} does not exist")
    if args.cert_ttl_seconds < 60:
        parser.error("--cert-ttl-seconds must be at least 60")
    from kubernetes import config as kube_config

    api_client = kube_config.new_client_from_config(config_file=args.kubeconfig)
    snap, changes, stop = Snapshot(), watch.Changes(), threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    (state / "pki").mkdir(parents=True, exist_ok=True)
    istiod = istiod_mod.Istiod(api_client, snap, state, datetime.timedelta(seconds=args.cert_ttl_seconds))
    istiod.start_webhook()
    router = router_mod.Router(snap, state)  # HAProxy, files in <state>/router/, CA in <state>/pki/
    try:
        router.start()  # from this (main) thread: HAProxy gets SIGTERM should this process die
    except router_mod.RouterError as exc:
        LOG.error("router could not start on %s:%s: %s", *router.listen, exc)
        return 1
    watch.start_watchers(api_client, snap, changes, stop)
    ready = state / "run" / READY_FILE
    ready.parent.mkdir(parents=True, exist_ok=True)
    ready.write_text("webhook https://%s:%s router https://%s:%s\n" % (istiod_mod.WEBHOOK_HOST,
                     istiod_mod.WEBHOOK_PORT, *router.listen))
    LOG.info("mesh addon ready")
    try:
        while not stop.is_set():
            since = changes.wait(1.0)
            if since is not None:
                istiod.sync_webhooks()
                router_mod.admit_routes(api_client, snap)
            istiod.push(since)
            if since is not None:
                router.sync()  # after the push: an HAProxy check + reload does not delay the mesh config
    except KeyboardInterrupt:
        pass
    finally:
        ready.unlink(missing_ok=True)
        router.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

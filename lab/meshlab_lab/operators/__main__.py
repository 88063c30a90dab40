"""Lab addon: emulated OLM + Service Mesh 2 operator.

``python -m meshlab_lab.operators --kubeconfig .lab/kubeconfig --state-dir .lab`` installs the
catalog objects, starts both controllers and the SMCP admission webhook, then writes
``<state-dir>/run/meshlab_lab.operators.ready`` and runs until SIGTERM/SIGINT.
"""
import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from meshlab_lab.k8s import api_client, wait_for
from meshlab_lab.operators import catalog
from meshlab_lab.operators.maistra import MaistraController, validate_smcp
from meshlab_lab.operators.olm import OlmController
from meshlab_lab.operators.rest import Rest
from meshlab_lab.operators.webhook import WebhookServer

READY_NAME = "meshlab_lab.operators.ready"
BASE_KINDS = ("/apis/operators.coreos.com/v1alpha1/subscriptions",
              "/apis/packages.operators.coreos.com/v1/packagemanifests",
              "/apis/route.openshift.io/v1/routes")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m meshlab_lab.operators", description=__doc__.split("\n")[0])
    parser.add_argument("--kubeconfig", required=True, type=Path)
    parser.add_argument("--state-dir", required=True, type=Path)
    parser.add_argument("--webhook-port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--timeout", type=float, default=60, help="seconds to wait for the base CRDs")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(threadName)s %(levelname)s %(message)s")
    if not args.kubeconfig.is_file():
        parser.error(f"kubeconfig {args.kubeconfig} not found")

    rest = Rest(api_client(str(args.kubeconfig)))
    # lab up applies lab/crds/base before starting addons; fail clearly if that did not happen
    wait_for(lambda: all(rest.get(p) is not None for p in BASE_KINDS), args.timeout,
             "the base CRDs (lab/crds/base) to be served")
    catalog.install_base(rest)

    stop = threading.Event()
    webhook = WebhookServer({}, cert_dir=args.state_dir / "pki" / "operators-webhook", port=args.webhook_port)
    webhook.handlers["/validate-smcp"] = lambda request: validate_smcp(rest, request)
    webhook.start()
    controllers = [OlmController(rest, stop), MaistraController(rest, stop, webhook)]
    for controller in controllers:
        controller.start()

    run_dir = args.state_dir / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    ready = run_dir / READY_NAME
    ready.write_text(f"webhook https://127.0.0.1:{webhook.port}\n")
    logging.info("operators ready (webhook on 127.0.0.1:%d)", webhook.port)

    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    ready.unlink(missing_ok=True)
    webhook.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`python -m meshlab_lab up|down|status` (PYTHONPATH=lab)."""
import argparse
import json
import sys

from meshlab_lab import lab


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="meshlab_lab", description="the meshlab local lab")
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("up", help="(re)start the lab from scratch")
    sub.add_parser("down", help="stop the lab and remove everything it made")
    st = sub.add_parser("status", help="show what runs; exit 0 when healthy")
    st.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    try:
        if args.cmd == "up":
            lab.up()
        elif args.cmd == "down":
            lab.down()
        else:
            result = lab.status()
            if args.json:
                print(json.dumps(result, indent=2))
            else:
                for key, ok in result.items():
                    print(f"{key:28s} {'ok' if ok else 'DOWN'}")
            return 0 if result["healthy"] else 1
    except (lab.LabError, TimeoutError, RuntimeError, FileNotFoundError, ValueError) as exc:
        print(f"meshlab_lab {args.cmd}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

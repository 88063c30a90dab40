"""Gateway routing: Host header against Gateway/VirtualService hosts, then the first matching http route."""


def host_matches(pattern: str, host: str) -> bool:
    host = host.split(":", 1)[0].lower()
    pattern = pattern.lower()
    if pattern == "*":
        return True
    if pattern.startswith("*."):
        return host.endswith(pattern[1:])
    return host == pattern


def uri_matches(match: dict, path: str) -> bool:
    path = path.split("?", 1)[0]
    if "exact" in match:
        return path == match["exact"]
    if "prefix" in match:
        return path.startswith(match["prefix"])
    return True


def match_route(gateway: dict, port: int, host: str, path: str) -> dict | None:
    """First route (VirtualService order) whose port, VirtualService host, Gateway server host and uri match."""
    for route in gateway.get("routes", []):
        if route.get("port") != port or not any(host_matches(h, host) for h in route.get("hosts", ["*"])):
            continue
        if not any(host_matches(h, host) for h in route.get("server_hosts", ["*"])):
            continue  # the Gateway server does not accept this host
        matches = route.get("match") or [{}]
        if any(uri_matches(m, path) for m in matches):
            return route
    return None

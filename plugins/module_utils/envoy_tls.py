# -*- coding: utf-8 -*-
# Copyright: meshlab.mtls contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Read the TLS side of an Envoy config dump (the JSON of ``pilot-agent request GET config_dump``).

Three views:

* ``summarize`` / ``render_table`` / ``authz_check_text``: the per filter chain table that
  ``istioctl experimental authz check`` printed in Istio 1.4-1.7 (LISTENER[FilterChain], CERTIFICATE,
  mTLS (MODE), AuthZ (RULES)).
* ``inbound_modes``: the effective PeerAuthentication mode per inbound port.
* ``outbound_tls``: per outbound cluster, whether the sidecar originates TLS.

Plain Python, no Ansible imports, so filters, modules and tests share it.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import functools
import ipaddress

INBOUND_CAPTURE_PORT = 15006
CATCH_ALL = "*"
TABLE_HEADER = ("LISTENER[FilterChain]", "CERTIFICATE", "mTLS (MODE)", "AuthZ (RULES)")
# Go text/tabwriter settings istioctl used: minwidth 0, padding 5, pad with spaces.
TABLE_PADDING = 5

# Istio's authn MutualTls.Mode enum: an empty "mtls": {} means the first value, STRICT.
_AUTHN_MODE_NAMES = {0: "STRICT", 1: "PERMISSIVE"}
_HTTP_CONNECTION_MANAGERS = ("envoy.http_connection_manager", "envoy.filters.network.http_connection_manager")
_RBAC_FILTERS = ("envoy.filters.http.rbac", "envoy.filters.network.rbac")


class EnvoyDumpError(ValueError):
    """The input is not an Envoy config dump this module can read."""


def _shape_errors(function):
    """Report a dump whose inner parts have the wrong types as EnvoyDumpError, not as a Python traceback."""
    @functools.wraps(function)
    def wrapper(*args):
        try:
            return function(*args)
        except EnvoyDumpError:
            raise
        except (AttributeError, TypeError, KeyError, IndexError, ValueError) as exc:
            raise EnvoyDumpError("the config dump does not have the shape of Envoy's admin config_dump "
                                 "(%s: %s); pass the unmodified JSON" % (type(exc).__name__, exc)) from exc
    return wrapper


# ---------------------------------------------------------------- dump access


def _check_dump(config_dump):
    if not isinstance(config_dump, dict):
        raise EnvoyDumpError(
            "expected the JSON of `pilot-agent request GET config_dump`: a dict with a 'configs' list; got a %s"
            % type(config_dump).__name__
        )
    configs = config_dump.get("configs")
    if not isinstance(configs, list):
        raise EnvoyDumpError(
            "expected the JSON of `pilot-agent request GET config_dump`: a dict with a 'configs' list; "
            "got a dict with keys %s" % sorted(config_dump)[:10]
        )
    for index, config in enumerate(configs):
        if not isinstance(config, dict):
            raise EnvoyDumpError("config dump entry configs[%d] is a %s, expected a dict with '@type'"
                                 % (index, type(config).__name__))
    return configs


def _section(config_dump, type_suffix, marker_keys):
    for config in _check_dump(config_dump):
        if str(config.get("@type", "")).endswith(type_suffix) or any(key in config for key in marker_keys):
            return config
    return None


def _listeners_section(config_dump):
    section = _section(config_dump, "ListenersConfigDump",
                       ("dynamic_listeners", "static_listeners", "dynamic_active_listeners"))
    if section is None:
        raise EnvoyDumpError(
            "the config dump has no ListenersConfigDump entry; dump the whole config "
            "(`pilot-agent request GET config_dump`), not a filtered resource"
        )
    return section


def _unwrap_listener(entry, where):
    if not isinstance(entry, dict):
        raise EnvoyDumpError("%s is a %s, expected a dict" % (where, type(entry).__name__))
    if isinstance(entry.get("active_state"), dict):
        entry = entry["active_state"]
    listener = entry.get("listener", entry)
    if not isinstance(listener, dict):
        raise EnvoyDumpError("%s.listener is a %s, expected a dict" % (where, type(listener).__name__))
    return listener


def _dynamic_listeners(config_dump):
    """Dynamic (xDS pushed) listeners, in dump order. Entries without an active listener are skipped."""
    section = _listeners_section(config_dump)
    found = []
    for key in ("dynamic_listeners", "dynamic_active_listeners"):
        entries = section.get(key) or []
        if not isinstance(entries, list):
            raise EnvoyDumpError("ListenersConfigDump.%s is a %s, expected a list" % (key, type(entries).__name__))
        for index, entry in enumerate(entries):
            if isinstance(entry, dict) and key == "dynamic_listeners" and "active_state" not in entry:
                continue  # only warming / draining state: not serving
            found.append(_unwrap_listener(entry, "%s[%d]" % (key, index)))
    return found


def _static_listeners(config_dump):
    section = _listeners_section(config_dump)
    return [_unwrap_listener(entry, "static_listeners[%d]" % index)
            for index, entry in enumerate(section.get("static_listeners") or [])]


def node_ip(config_dump):
    """The workload IP from the bootstrap node id (``sidecar~<ip>~<pod>.<ns>~<domain>``), or None."""
    bootstrap = _section(config_dump, "BootstrapConfigDump", ("bootstrap",))
    if bootstrap is None:
        return None
    node_id = ((bootstrap.get("bootstrap") or {}).get("node") or {}).get("id", "")
    parts = str(node_id).split("~")
    return parts[1] if len(parts) == 4 else None


def _socket_address(listener):
    socket = (listener.get("address") or {}).get("socket_address") or {}
    return socket.get("address"), socket.get("port_value")


# ---------------------------------------------------------------- filter chain facts


def _typed(config_holder):
    """The config of a filter / socket, whether given as ``typed_config`` or the v2 ``config`` struct."""
    config = config_holder.get("typed_config")
    if config is None:
        config = config_holder.get("config")
    if isinstance(config, dict) and str(config.get("@type", "")).endswith("udpa.type.v1.TypedStruct"):
        config = config.get("value") or {}
    return config if isinstance(config, dict) else {}


def _downstream_tls_context(chain):
    if isinstance(chain.get("tls_context"), dict):
        return chain["tls_context"]
    socket = chain.get("transport_socket")
    if isinstance(socket, dict):
        config = _typed(socket)
        if "tls" in str(socket.get("name", "")) or str(config.get("@type", "")).endswith("DownstreamTlsContext"):
            return config
    return None


def _bool_value(value):
    if isinstance(value, dict):  # protobuf BoolValue wrapper in v2 JSON
        value = value.get("value")
    return value is True or value == "true"


def chain_is_mutual_tls(chain):
    """True when the chain terminates TLS and requires a client certificate."""
    context = _downstream_tls_context(chain)
    return context is not None and _bool_value(context.get("require_client_certificate"))


def _certificate(chain):
    context = _downstream_tls_context(chain)
    if context is None:
        return "none"
    common = context.get("common_tls_context") or {}
    files = [((cert.get("certificate_chain") or {}).get("filename") or "<inline>")
             for cert in common.get("tls_certificates") or []]
    sds = [str(config.get("name", "")) for config in common.get("tls_certificate_sds_secret_configs") or []]
    parts = []
    if files:
        parts.append(",".join(files))
    if sds:
        parts.append("SDS: " + ",".join(sds))
    # istioctl 1.6 printed "noneSDS: default" for SDS-only chains (it appended to its "none" default);
    # we print the intended "SDS: default".
    return "; ".join(parts) if parts else "none"


def _http_filters(chain):
    for network_filter in chain.get("filters") or []:
        if network_filter.get("name") in _HTTP_CONNECTION_MANAGERS:
            yield from _typed(network_filter).get("http_filters") or []


def _authn_policy_modes(chain):
    """Modes from the Istio <=1.7 ``istio_authn`` HTTP filter policy, or None when the chain has none."""
    for http_filter in _http_filters(chain):
        if http_filter.get("name") != "istio_authn":
            continue
        policy = _typed(http_filter).get("policy")
        if not isinstance(policy, dict):
            return None
        modes = []
        for peer in policy.get("peers") or []:
            mtls = peer.get("mtls") if isinstance(peer, dict) else None
            if isinstance(mtls, dict):
                mode = mtls.get("mode", 0)
                modes.append(_AUTHN_MODE_NAMES.get(mode, str(mode)))
        return modes
    return None


def _rbac_policy_names(chain):
    names, found = [], False
    rbac_configs = [_typed(f) for f in _http_filters(chain) if f.get("name") in _RBAC_FILTERS]
    rbac_configs += [_typed(f) for f in chain.get("filters") or [] if f.get("name") in _RBAC_FILTERS]
    for config in rbac_configs:
        found = True
        names.extend(sorted(((config.get("rules") or {}).get("policies") or {})))
    if not found:
        return "no (none)"
    return "yes (%d: %s)" % (len(names), ", ".join(names)) if names else "yes (none)"


# ---------------------------------------------------------------- inbound port groups


def _is_inbound(listener, workload_ip):
    address, port = _socket_address(listener)
    if address is None:
        return False
    if listener.get("name") == "virtualInbound" or (address == "0.0.0.0" and port == INBOUND_CAPTURE_PORT):
        return True
    if listener.get("traffic_direction") == "INBOUND":
        return True
    return workload_ip is not None and address == workload_ip


def _chain_port(listener, chain):
    """The inbound port a chain serves, ``"*"`` for a catch-all, or None for the capture port's blackhole."""
    listener_port = _socket_address(listener)[1]
    match = chain.get("filter_chain_match") or {}
    port = match.get("destination_port")
    if isinstance(port, dict):
        port = port.get("value")
    capture = listener.get("name") == "virtualInbound" or listener_port == INBOUND_CAPTURE_PORT
    if port is None:
        return CATCH_ALL if capture else listener_port
    port = int(port)
    if capture and port == listener_port:
        return None  # direct connections to 15006 itself are dropped
    return port


def _mode_of(kinds):
    """kinds: set of 'mtls' / 'plain' seen among a port's chains."""
    if kinds == {"mtls"}:
        return "STRICT"
    if "mtls" in kinds:
        return "PERMISSIVE"
    return "DISABLE"


def _port_kinds(config_dump):
    workload_ip = node_ip(config_dump)
    kinds = {}
    for listener in _dynamic_listeners(config_dump):
        if not _is_inbound(listener, workload_ip):
            continue
        for chain in listener.get("filter_chains") or []:
            port = _chain_port(listener, chain)
            if port is not None:
                kinds.setdefault(port, set()).add("mtls" if chain_is_mutual_tls(chain) else "plain")
    return kinds


@_shape_errors
def inbound_modes(config_dump):
    """Effective inbound mode per port: ``{9080: 'PERMISSIVE', '*': 'DISABLE', ...}``.

    A port with a mutual-TLS chain and a non-mutual chain is PERMISSIVE, only mutual TLS is STRICT,
    no mutual TLS is DISABLE. Ports come from per-port inbound listeners (Istio <=1.7) and from the
    ``destination_port`` matches of ``virtualInbound``; its chains without a port form the ``"*"`` entry.
    """
    return {port: _mode_of(kinds) for port, kinds in _port_kinds(config_dump).items()}


# ---------------------------------------------------------------- authz check table


def _sort_key(listener):
    address, port = _socket_address(listener)
    return (ipaddress.ip_address(address).packed.rjust(16, b"\0") if address else b"", int(port or 0))


def _checked_listeners(config_dump):
    """Listeners istioctl 1.6 checked: dynamic ones bound to 0.0.0.0 or the workload IP, by (IP, port)."""
    workload_ip = node_ip(config_dump)
    wanted = {"0.0.0.0", workload_ip} - {None}
    picked = [listener for listener in _dynamic_listeners(config_dump) if _socket_address(listener)[0] in wanted]
    return sorted(picked, key=_sort_key)


@_shape_errors
def summarize(config_dump):
    """One row per filter chain, like ``istioctl experimental authz check`` (Istio 1.4-1.7).

    Row keys: ``listener``, ``filter_chain`` (index, or None when the listener has a single chain),
    ``certificate`` (file, ``SDS: <name>`` or ``none``), ``mtls`` (bool: client certificate required),
    ``mode`` (``STRICT``/``PERMISSIVE``/``none``) and ``authz`` (the AuthZ (RULES) cell).
    ``mode`` comes from the Istio <=1.7 authn filter policy; dumps without one (Istio >=1.8) get the
    effective mode of the chain's inbound port when it is STRICT or PERMISSIVE.
    """
    workload_ip = node_ip(config_dump)
    port_modes = inbound_modes(config_dump)
    rows = []
    for listener in _checked_listeners(config_dump):
        chains = listener.get("filter_chains") or []
        inbound = _is_inbound(listener, workload_ip)
        for index, chain in enumerate(chains):
            modes = _authn_policy_modes(chain)
            port_mode = port_modes.get(_chain_port(listener, chain)) if inbound else None
            if modes:
                mode = ",".join(modes)
            elif modes is None and port_mode in ("STRICT", "PERMISSIVE"):
                mode = port_mode
            else:
                mode = "none"
            rows.append({
                "listener": listener.get("name", ""),
                "filter_chain": index if len(chains) > 1 else None,
                "certificate": _certificate(chain),
                "mtls": chain_is_mutual_tls(chain),
                "mode": mode,
                "authz": _rbac_policy_names(chain),
            })
    return rows


def _row_cells(row):
    for key in ("listener", "certificate", "mtls", "mode"):
        if key not in row:
            raise EnvoyDumpError("table row %r lacks the key %r; pass the rows made by summarize()" % (row, key))
    name = row["listener"] if row.get("filter_chain") is None else "%s[%d]" % (row["listener"], row["filter_chain"])
    mtls = "%s (%s)" % ("yes" if row["mtls"] else "no", row["mode"])
    return (name, row["certificate"], mtls, row.get("authz", "no (none)"))


@_shape_errors
def render_table(rows):
    """The table as istioctl printed it (Go tabwriter, padding 5); every line ends with a newline."""
    if not isinstance(rows, list):
        raise EnvoyDumpError("expected a list of rows from summarize(); got a %s" % type(rows).__name__)
    lines = [TABLE_HEADER] + [_row_cells(row) for row in rows]
    widths = [max(len(line[column]) for line in lines) + TABLE_PADDING for column in range(len(TABLE_HEADER) - 1)]
    out = []
    for line in lines:
        out.append("".join(line[column].ljust(widths[column]) for column in range(len(widths))) + line[-1] + "\n")
    return "".join(out)


@_shape_errors
def authz_check_text(config_dump):
    """The whole listener part of ``istioctl experimental authz check -f <dump>`` output."""
    rows = summarize(config_dump)
    checked = len(_checked_listeners(config_dump))
    header = "Checked %d/%d listeners with node IP %s.\n" % (
        checked, len(_dynamic_listeners(config_dump)), node_ip(config_dump) or "unknown")
    return header + render_table(rows)


# ---------------------------------------------------------------- outbound clusters


def _unwrap_cluster(entry):
    if isinstance(entry, dict) and isinstance(entry.get("cluster"), dict):
        return entry["cluster"]
    return entry if isinstance(entry, dict) else {}


def _socket_originates_tls(socket):
    if not isinstance(socket, dict):
        return False
    config = _typed(socket)
    return str(config.get("@type", "")).endswith("UpstreamTlsContext") or (
        "tls" in str(socket.get("name", "")) and bool(config))


def cluster_originates_tls(cluster):
    """True when the cluster has an UpstreamTlsContext (directly, v2 ``tls_context`` or a socket match)."""
    if isinstance(cluster.get("tls_context"), dict):
        return True
    if _socket_originates_tls(cluster.get("transport_socket")):
        return True
    return any(_socket_originates_tls((match or {}).get("transport_socket"))
               for match in cluster.get("transport_socket_matches") or [])


@_shape_errors
def outbound_tls(config_dump):
    """``{'outbound|9080||details.bookinfo.svc.cluster.local': True, ...}`` for every outbound cluster.

    True means the cluster carries an UpstreamTlsContext. With auto mTLS it sits in a
    ``transport_socket_matches`` entry, so Envoy uses it only toward endpoints labelled ``tlsMode: istio``.
    """
    section = _section(config_dump, "ClustersConfigDump", ("dynamic_active_clusters", "static_clusters"))
    if section is None:
        raise EnvoyDumpError(
            "the config dump has no ClustersConfigDump entry; dump the whole config "
            "(`pilot-agent request GET config_dump`), not only the listeners"
        )
    result = {}
    for key in ("static_clusters", "dynamic_active_clusters", "dynamic_warming_clusters"):
        for entry in section.get(key) or []:
            cluster = _unwrap_cluster(entry)
            name = str(cluster.get("name", ""))
            if name.startswith("outbound|"):
                result[name] = cluster_originates_tls(cluster)
    return result

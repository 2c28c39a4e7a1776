"""Filters for a node's client subnet, with Python's ipaddress (no netaddr on the controller).

The rules match pvpn_common::addressing::ClientSubnet: an IPv4 network /16 to /30, written as its
network address; the node itself takes the first host address.
"""

import ipaddress

MIN_PREFIX = 16
MAX_PREFIX = 30


def pvpn_subnet_error(value):
    """Why `value` is not a valid node subnet, or '' when it is."""
    try:
        net = ipaddress.IPv4Network(str(value), strict=True)
    except ValueError as err:
        return "%r is not an IPv4 network written as its network address: %s" % (value, err)
    if "/" not in str(value):
        return "%r has no prefix length" % (value,)
    if not MIN_PREFIX <= net.prefixlen <= MAX_PREFIX:
        return "%s must be /%d to /%d" % (net, MIN_PREFIX, MAX_PREFIX)
    return ""


def pvpn_node_address(value):
    """The node's own interface address: the first host, with the subnet's prefix (10.66.0.1/22)."""
    net = ipaddress.IPv4Network(str(value), strict=True)
    return "%s/%d" % (net.network_address + 1, net.prefixlen)


class FilterModule:
    """Ansible entry point."""

    def filters(self):
        return {
            "pvpn_subnet_error": pvpn_subnet_error,
            "pvpn_node_address": pvpn_node_address,
        }

"""Who the client is: its address, trusting X-Forwarded-For only from configured proxies."""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network

Network = IPv4Network | IPv6Network

# Hugging Face Spaces' proxy reaches the app from a private address.
PRIVATE_RANGES = "10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,fc00::/7"
EVERYWHERE = "0.0.0.0/0,::/0"


def parse_networks(text: str) -> tuple[Network, ...]:
    """'127.0.0.1, 10.0.0.0/8' -> networks; '*' trusts every address. ValueError names a bad entry."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    networks = []
    for item in items:
        for part in EVERYWHERE.split(",") if item == "*" else [item]:
            try:
                networks.append(ip_network(part, strict=False))
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address or CIDR range") from None
    return tuple(networks)


def is_trusted(address: str, proxies: tuple[Network, ...]) -> bool:
    try:
        parsed = ip_address(address)
    except ValueError:
        return False  # not an address at all: nobody we trust
    return any(parsed in network for network in proxies)


def client_address(peer: str | None, forwarded_for: str, proxies: tuple[Network, ...]) -> str:
    """The client's address.

    A direct peer that is not a trusted proxy is the client, whatever headers it sent.
    Behind trusted proxies, each proxy appends the address it saw to X-Forwarded-For,
    so the client is the rightmost address that is not itself a trusted proxy;
    everything left of it is whatever the client chose to write.
    """
    peer = peer or "unknown"
    if not is_trusted(peer, proxies):
        return peer
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not is_trusted(hop, proxies):
            return hop
    return hops[0] if hops else peer  # every hop is a proxy of ours: the first is as close as it gets

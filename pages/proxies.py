"""Who the client is: its address, trusting X-Forwarded-For only from configured proxies."""

from __future__ import annotations

from ipaddress import ip_address

from config import Network


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

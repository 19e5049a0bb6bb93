"""Signal addresses: node ids with namespace URIs (re-resolved at every connect) and browse paths.

A namespace index is only valid for one run of a server: after a restart the server may register its
namespaces in another order. So `nsu=<URI>;s=...` is kept as (URI, identifier) and turned into a NodeId with the
index the server reports in its NamespaceArray at each connect; browse paths are walked again at each connect.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from asyncua import Client, ua

ROOT = ua.NodeId(ua.ObjectIds.RootFolder)


class UnresolvedNode(Exception):
    """A configured node cannot be found on this server (the message names what is missing)."""


@dataclass(frozen=True, slots=True)
class NodeRef:
    """A parsed node id whose namespace is either a URI (resolved per connect) or a fixed index."""

    id_type: str  # i, s, g, b
    identifier: str
    namespace_uri: str | None = None
    namespace_index: int | None = None

    def resolve(self, namespaces: Sequence[str]) -> ua.NodeId:
        if self.namespace_uri is not None:
            try:
                idx = list(namespaces).index(self.namespace_uri)
            except ValueError:
                raise UnresolvedNode(f"namespace {self.namespace_uri} is not on this server") from None
        else:
            idx = self.namespace_index or 0
        return make_node_id(self.id_type, self.identifier, idx)


def make_node_id(id_type: str, identifier: str, ns: int) -> ua.NodeId:
    if id_type == "i":
        return ua.NodeId(int(identifier), ns, ua.NodeIdType.Numeric)
    if id_type == "s":
        return ua.NodeId(identifier, ns, ua.NodeIdType.String)
    if id_type == "g":
        return ua.NodeId(uuid.UUID(identifier), ns, ua.NodeIdType.Guid)
    return ua.NodeId(base64.b64decode(identifier), ns, ua.NodeIdType.ByteString)


def parse_node(text: str, default_namespace: str | None = None) -> NodeRef:
    """Parse a node id as validated by the config (nsu=/ns= prefix optional)."""
    uri: str | None = None
    index: int | None = None
    rest = text
    if text.startswith("nsu="):
        head, _, rest = text.partition(";")
        uri = head[4:]
    elif text.startswith("ns="):
        head, _, rest = text.partition(";")
        index = int(head[3:])
    elif default_namespace is not None:
        uri = default_namespace
    id_type, _, identifier = rest.partition("=")
    return NodeRef(id_type, identifier, uri, index)


def format_node(node_id: ua.NodeId, namespaces: Sequence[str]) -> str:
    """A node id as a technician should write it: with the namespace URI, never the index (except ns 0)."""
    t = node_id.NodeIdType
    if t in (ua.NodeIdType.TwoByte, ua.NodeIdType.FourByte, ua.NodeIdType.Numeric):
        ident = f"i={node_id.Identifier}"
    elif t == ua.NodeIdType.String:
        ident = f"s={node_id.Identifier}"
    elif t == ua.NodeIdType.Guid:
        ident = f"g={node_id.Identifier}"
    else:
        ident = f"b={base64.b64encode(node_id.Identifier).decode()}"
    ns = node_id.NamespaceIndex
    if ns == 0:
        return ident
    if ns < len(namespaces):
        return f"nsu={namespaces[ns]};{ident}"
    return f"ns={ns};{ident}"


async def resolve_path(client: Client, path: str, namespace: str | None, namespaces: Sequence[str],
                       cache: dict[str, ua.NodeId]) -> ua.NodeId:
    """Walk `path` (names separated by '/') from the Root folder; `cache` shares walked prefixes.

    A name is matched against the children's browse names; when two children share a name in different
    namespaces, the one in `namespace` wins.
    """
    current = ROOT
    walked = ""
    preferred = namespaces.index(namespace) if namespace in namespaces else None
    for name in path.split("/"):
        walked = f"{walked}/{name}" if walked else name
        if walked in cache:
            current = cache[walked]
            continue
        refs = await client.get_node(current).get_references(
            refs=ua.ObjectIds.HierarchicalReferences, direction=ua.BrowseDirection.Forward,
            nodeclassmask=ua.NodeClass.Object | ua.NodeClass.Variable)
        matches = [r for r in refs if r.BrowseName.Name == name]
        if len(matches) > 1 and preferred is not None:
            matches = [r for r in matches if r.BrowseName.NamespaceIndex == preferred] or matches
        if not matches:
            here = ", ".join(sorted({r.BrowseName.Name for r in refs})[:12]) or "nothing"
            raise UnresolvedNode(f"path {path}: no {name!r} under {walked.rpartition('/')[0] or 'Root'} "
                                 f"(found: {here})")
        current = matches[0].NodeId
        cache[walked] = current
    return current

"""A Python plugin that misbehaves on purpose. The setting ``behaviour`` chooses how
(in ``map-batch``; ``info`` and ``required-attributes`` behave):

- ``raise``: raises ``ValueError`` for the entry ``uid=u1,...`` and maps the others.
- ``raise-batch``: raises outside the SDK's per-entry guard (from ``map_batch``), so
  the whole call fails and only the traceback on stderr tells why.
- ``wrong-shape``: returns a ``list`` where the JSON text of the decisions belongs.
- ``wrong-json``: returns text that is not JSON.
- ``loop``: spins forever.
- ``memory``: grows a list until it is stopped.
- ``recursion``: recurses without end.
- ``network``: connects to the setting ``address`` (TCP).
- ``files``: reads ``/etc/passwd``.
- ``print``: prints a line, then skips every entry.
- ``echo``: skips each entry with a reason that shows what the SDK read from it.
- ``bad-value``: returns a user with a number among its ABAC values.
- anything else: skips every entry with reason ``ok``.
"""

import json

import abacsync_mapping as abacsync


def _recurse(depth):
    return _recurse(depth + 1) + 1


class Mapper(abacsync.Mapping):
    name = "hostile-python"
    version = "0.2.0"
    attributes = ["uid"]

    def map_batch(self, context, entries):
        behaviour = {s.key: s.value for s in context.settings}.get("behaviour")
        rows = json.loads(entries)["entries"]
        if behaviour == "raise-batch":
            raise RuntimeError(f"gave up on a batch of {len(rows)} entries")
        if behaviour == "wrong-shape":
            return [{"username": row[0]} for row in rows]
        if behaviour == "wrong-json":
            return "[{'skip': 'single quotes'}]"
        return super().map_batch(context, entries)

    def map(self, entry):
        behaviour = self.settings.get("behaviour")
        if behaviour == "raise":
            if entry.dn.startswith("uid=u1,"):
                raise ValueError(f"cannot map {entry.dn}")
        elif behaviour == "loop":
            while True:
                pass
        elif behaviour == "memory":
            hoard = []
            while True:
                hoard.append(bytearray(1 << 20))
        elif behaviour == "recursion":
            _recurse(0)
        elif behaviour == "network":
            import socket

            host, port = self.settings["address"].rsplit(":", 1)
            socket.create_connection((host, int(port)), timeout=1)
            return abacsync.skip("connected")
        elif behaviour == "files":
            with open("/etc/passwd", "rb") as f:
                return abacsync.skip(f"read {len(f.read())} bytes")
        elif behaviour == "print":
            print(f"mapping {entry.dn}")
        elif behaviour == "echo":
            guid = "".join(f"{b:02x}" for value in entry.binary("objectGUID") for b in value)
            groups = "unknown" if entry.groups is None else ",".join(entry.groups)
            parts = [
                entry.dn,
                ",".join(entry.values("UID")),
                ",".join(entry.values("ou")),
                entry.first("ou") or "-",
                guid,
                str(entry.has("objectguid")).lower(),
                groups,
                entry.first("mail") or "-",
                str(entry.has("mail")).lower(),
            ]
            return abacsync.skip("|".join(parts))
        elif behaviour == "bad-value":
            return abacsync.user("u", entry.dn, attributes={"unit": ["Sales", 7]})
        return abacsync.skip("ok")

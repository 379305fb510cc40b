"""The cost of the Python bindings alone, for the plugin_runtime benchmark: every entry
becomes the same prebuilt user, of the shape the OpenLDAP example produces, without the
script reading the entry. What remains is the batch crossing the boundary (contract
0.2.0: one JSON document each way) and CPython's ``json`` parsing the entries and
writing the users: no mapping can be faster than this."""

import gc
import json

from wit_world import exports
from wit_world.imports import types

USER = {
    "upsert": {
        "username": "user000001",
        "ldap_id": "00000001-6a55-4d7c-9d0e-1f1d5a1e9a01",
        "email": "user000001@example.org",
        "display_name": "User Number 1",
        "language": None,
        "active": True,
        "attributes": {
            "department": ["4701", "101"],
            "employeeType": ["staff"],
            "location": ["Oslo"],
            "unit": ["Sales"],
        },
    }
}


class Mapper(exports.Mapper):
    def info(self):
        return types.PluginInfo("constant-python", "0.2.0")

    def required_attributes(self, context):
        return ["uid"]

    def map_batch(self, context, entries):
        gc.set_threshold(100_000)  # as the SDK does
        count = len(json.loads(entries)["entries"])
        return json.dumps([USER] * count, separators=(",", ":"))

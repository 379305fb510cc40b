"""The cost of the Python bindings alone, for the plugin_runtime benchmark: every entry
becomes the same prebuilt user, of the shape the OpenLDAP example produces, without the
script reading the entry. What remains is componentize-py converting each entry into
Python objects and the user back: no mapping can be faster than this."""

from componentize_py_types import Ok
from wit_world import exports
from wit_world.imports import types

USER = Ok(
    types.Decision_Upsert(
        types.User(
            "user000001",
            "user000001@example.org",
            "User Number 1",
            None,
            True,
            "00000001-6a55-4d7c-9d0e-1f1d5a1e9a01",
            [
                types.AbacAttribute("department", ["4701", "101"]),
                types.AbacAttribute("employeeType", ["staff"]),
                types.AbacAttribute("location", ["Oslo"]),
                types.AbacAttribute("unit", ["Sales"]),
            ],
        )
    )
)


class Mapper(exports.Mapper):
    def info(self):
        return types.PluginInfo("constant-python", "0.1.0")

    def required_attributes(self, context):
        return ["uid"]

    def map_entries(self, context, entries):
        return [USER] * len(entries)

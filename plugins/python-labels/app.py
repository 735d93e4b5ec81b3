"""A node selector written in Python: proof that any language that compiles
to a WebAssembly component can be a Strata plugin.

`labels` keeps the candidates whose labels match every `require` entry of
the plugin config or the bucket policy (`require = "gpu=true,tier=hot"`),
then prefers the nodes with the most free bytes; the node id breaks ties so
the answer is deterministic.

Build: componentize-py -d ../../wit -w node-selector componentize app -o labels.wasm
"""

from typing import Dict, List, Tuple

from componentize_py_types import Err
from wit_world import exports
from wit_world.exports import lifecycle
from wit_world.imports import log, topology, types

_required: Dict[str, str] = {}


def parse_requirements(text: str) -> Dict[str, str]:
    out: Dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        if "=" not in part:
            raise ValueError(f"requirement {part!r} is not label=value")
        key, value = part.split("=", 1)
        out[key.strip()] = value.strip()
    return out


class Lifecycle(exports.Lifecycle):
    def info(self) -> lifecycle.PluginInfo:
        return lifecycle.PluginInfo(
            name="labels",
            version="0.1.0",
            description="nodes whose labels match, most free space first (Python)",
        )

    def init(self, config: List[Tuple[str, str]]) -> None:
        for key, value in config:
            if key != "require":
                raise Err(f"unknown config key `{key}`; this plugin knows: require")
            try:
                _required.update(parse_requirements(value))
            except ValueError as e:
                raise Err(f"config key `require`: {e}")
        log.log(log.Level.INFO, f"labels: requiring {_required or 'nothing'}")


class Selector(exports.Selector):
    def select(
        self,
        nodes: topology.Topology,
        candidates: List[int],
        object: types.ObjectInfo,
        policy: types.ReplicationPolicy,
    ) -> List[int]:
        required = dict(_required)
        for key, value in policy.params:
            if key == "require":
                try:
                    required.update(parse_requirements(value))
                except ValueError as e:
                    raise Err(types.PluginError_InvalidInput(f"policy parameter require: {e}"))
        listed = nodes.nodes()
        fitting = [
            i for i in candidates
            if all(dict(listed[i].labels).get(k) == v for k, v in required.items())
        ]
        fitting.sort(key=lambda i: (-listed[i].capacity_available, listed[i].id))
        chosen = fitting[: policy.replicas]
        if len(chosen) < policy.min_replicas:
            raise Err(types.PluginError_Unsatisfiable(
                f"{len(chosen)} nodes match {required}, {policy.min_replicas} needed"))
        return chosen

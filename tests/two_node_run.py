"""Run the demo pipeline on a real two-node ``ray.cluster_utils.Cluster`` (own process: one Ray per
process) and print which nodes processed the documents, as JSON."""

import json
import sys
from collections import Counter

import pyarrow.parquet as pq
import ray
from ray.cluster_utils import Cluster

from thresher.config import load_config
from thresher.run import run_pipeline


def main(config: str, out: str) -> None:
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address)
    ray.data.DataContext.get_current().enable_progress_bars = False
    cfg = load_config(config, [f"output.path={out}", "ray.progress=false"])
    result = run_pipeline(cfg)
    nodes = Counter(
        json.loads(r["metadata"])["ray_node"] for r in pq.read_table(f"{out}/documents").to_pylist()
    )
    alive = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
    print(json.dumps({"documents": result.documents, "nodes": nodes, "cluster_nodes": alive}))
    ray.shutdown()
    cluster.shutdown()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

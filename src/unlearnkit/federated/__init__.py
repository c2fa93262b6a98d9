"""Federated learning on Flower and removing a client from the federated model.

``unlearn fl train`` runs FedAvg over N clients whose data are partitions of a dataset (:mod:`.partition`), in
Flower's simulation engine (:mod:`.apps`: a ClientApp and a ServerApp on the Message API) or in-process
(:mod:`.engine`), and keeps what unlearning needs (:mod:`.store`: global models, clients' updates, counts).
``unlearn fl forget`` removes a client with a method of :data:`FL_METHODS` (:mod:`.removal`: ``fl-retrain``, the
exact reference; ``federaser``; ``fl-gradient-ascent``; ``fedaccum``), and ``unlearn fl evaluate`` measures the
result against the reference (:mod:`.runs`). A client may hold a BadNets backdoor (``backdoor_client``), the proof
that a removal took the client's influence out. Flower is imported only where a federation actually runs.
"""

from unlearnkit.federated.client import FedConfig
from unlearnkit.federated.engine import BACKENDS, Cost, LocalFederation, fedavg, with_federation
from unlearnkit.federated.partition import PARTITIONS, parse_partition, partition_ids
from unlearnkit.federated.removal import FL_METHODS, ClientRemoval, RemovalTask
from unlearnkit.federated.runs import evaluate_client, forget_client, load_federated, train_federation

__all__ = [
    "BACKENDS", "FL_METHODS", "PARTITIONS", "ClientRemoval", "Cost", "FedConfig", "LocalFederation", "RemovalTask",
    "evaluate_client", "fedavg", "forget_client", "load_federated", "parse_partition", "partition_ids",
    "train_federation", "with_federation",
]

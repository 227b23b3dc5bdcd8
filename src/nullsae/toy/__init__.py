"""Toy-model lab (Heap et al. §4, App. C; docs/spec.md#toy-models): superposition data, random MLPs, the batched toy-SAE
L1 sweep and its Pareto frontiers, on toy data, word vectors and token embeddings."""

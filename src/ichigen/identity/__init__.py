"""Identity: the identity graph, merge rules, and probabilistic duplicate detection."""

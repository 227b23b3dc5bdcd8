"""One module per SAE architecture: its SAE class, registered by its config class in nullsae.sae.config."""

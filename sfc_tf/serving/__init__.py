"""TF Serving: SavedModel exports of the networks, and clients running them in process or on a server."""

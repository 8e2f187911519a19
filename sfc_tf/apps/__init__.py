"""Applications built on the codec: batch encoding, 1:N search, the archive pipeline."""

"""What every trainer shares: resuming, the time limit, the distribution strategy."""

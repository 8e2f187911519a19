"""The reconstruction: the network that rebuilds a face from a decoded feature, its training and running it."""

"""The base layer: the face crop, its FaceNet feature, and the few dozen bytes that code it."""

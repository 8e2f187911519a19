"""Measurement helpers shared by eval/: curve points, anchors, a second verifier, fuzzing, the CPU."""

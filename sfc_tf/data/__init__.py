"""Training and evaluation data: identity folders, LFW pairs, the training set, TFRecords, extra faces."""

"""Convert: a run's survivors JSON to the rigs' NPZ and its meta, in bounded memory."""

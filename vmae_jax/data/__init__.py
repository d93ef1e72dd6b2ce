"""Host-side data stages (numpy): annotation lists and sources, decoding, frame sampling, augmentation, masks, and
the Grain graph that runs them."""

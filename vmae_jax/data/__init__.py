"""Host-side data stages (numpy): masks now; sources, decoding, sampling and augmentation join them."""
